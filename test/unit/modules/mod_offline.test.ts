import { test, describe, beforeEach, afterEach } from 'node:test';
import { AccessRules } from '../../../src/config/access.ts';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { definition, offlineDecision, withDelay, delayStamp, type OfflineData, type OfflineOpts } from '../../../src/modules/mod_offline.ts';
import { Hooks } from '../../../src/hooks/hooks.ts';
import { removeUserData } from '../../../src/modules/storage.ts';
import type { Acc } from '../../../src/hooks/catalogue.ts';
import { openStoreAccess, type OpenStoreAccess } from '../../../src/storage/open.ts';
import { validate } from '../../../src/config/schema.ts';
import type { ModuleContext, ModuleInstance, SessionView } from '../../../src/modules/types.ts';
import type { PetrelConfig } from '../../../src/config/types.ts';
import type { OutgoingPools } from '../../../src/outgoing/types.ts';
import { parseElement } from '../../../src/xmpp/parse-element.ts';
import { parseJid, type JID } from '../../../src/xmpp/jid.ts';
import { Element } from '../../../src/xmpp/xml.ts';

const msg = (xml: string) => parseElement(xml);

describe('which messages are kept', () => {
  test('chat and normal messages with a body are stored, with or without a type', () => {
    assert.equal(offlineDecision(msg('<message type="chat"><body>hi</body></message>')), 'store');
    assert.equal(offlineDecision(msg('<message type="normal"><body>hi</body></message>')), 'store');
    assert.equal(offlineDecision(msg('<message><body>hi</body></message>')), 'store');
  });

  test('groupchat, headline and error messages are left to others', () => {
    for (const type of ['groupchat', 'headline', 'error']) {
      assert.equal(offlineDecision(msg(`<message type="${type}"><body>hi</body></message>`)), 'skip', type);
    }
  });

  test('presence and iq stanzas are left to others', () => {
    assert.equal(offlineDecision(msg('<presence/>')), 'skip');
    assert.equal(offlineDecision(msg('<iq type="get"><ping xmlns="urn:xmpp:ping"/></iq>')), 'skip');
  });

  test('a bare chat state notification is dropped', () => {
    assert.equal(offlineDecision(msg('<message type="chat"><composing xmlns="http://jabber.org/protocol/chatstates"/><thread>t</thread></message>')), 'drop');
    assert.equal(offlineDecision(msg('<message type="chat"/>')), 'drop');
  });

  test('a message without a body but with other content is stored', () => {
    assert.equal(offlineDecision(msg('<message><received xmlns="urn:xmpp:receipts" id="x"/></message>')), 'store');
  });

  test('the XEP-0334 hints decide before anything else', () => {
    assert.equal(offlineDecision(msg('<message type="chat"><body>x</body><no-store xmlns="urn:xmpp:hints"/></message>')), 'drop');
    assert.equal(offlineDecision(msg('<message type="chat"><active xmlns="http://jabber.org/protocol/chatstates"/><store xmlns="urn:xmpp:hints"/></message>')), 'store');
  });
});

describe('delay stamping', () => {
  test('the stamp is ISO 8601 in UTC', () => {
    assert.equal(delayStamp(Date.UTC(2024, 1, 29, 23, 5, 7, 42)), '2024-02-29T23:05:07.042Z');
  });

  test('a delay element from the domain is appended to a copy and the original is untouched', () => {
    const original = msg('<message to="a@b"><body>x</body></message>');
    const before = original.toString();
    const stamped = withDelay(original, 'example.com', Date.UTC(2020, 0, 1));
    assert.equal(original.toString(), before);
    const delay = stamped.getChild('delay', 'urn:xmpp:delay')!;
    assert.deepEqual(delay.attrs, { xmlns: 'urn:xmpp:delay', from: 'example.com', stamp: '2020-01-01T00:00:00.000Z' });
    assert.equal(stamped.getChildText('body'), 'x');
  });
});

describe('the module', () => {
  let dir: string;
  let access: OpenStoreAccess;
  let storage: OfflineData;
  let hooks: Hooks;
  let bounced: Array<{ packet: Element; condition: string; type?: string }>;
  let sessions: Map<string, SessionView & { got: Element[] }>;
  let instance: ModuleInstance | undefined;
  let features: Set<string>;

  const alice = parseJid('alice@example.com');
  const bob = parseJid('bob@example.com/phone');

  function acc(from: JID, to: JID, packet: Element, timestamp = Date.UTC(2024, 0, 1)): Acc {
    return { ref: 'r', timestamp, hostType: to.domain, lserver: to.domain, element: packet, from, to };
  }

  async function start(opts: Partial<OfflineOpts> = {}) {
    const validated = validate(definition.configSpec, opts, 'modules.mod_offline', { configDir: dir, warnings: [] }) as OfflineOpts;
    const ctx: ModuleContext = {
      config: {} as PetrelConfig,
      access: new AccessRules({}, {}, ['example.com']),
      hosts: ['example.com'],
      hooks,
      router: {
        route() {},
        routeError(packet, _from, _to, condition, type) {
          bounced.push({ packet, condition, type });
        },
        newAcc: (from, to, packet) => acc(from, to, packet),
        addService() {},
      },
      sessions: {
        byBare: (bare) => [...sessions.values()].filter((s) => s.jid.bare === bare),
        byFull: (full) => sessions.get(full),
        count: () => sessions.size,
      },
      users: {} as ModuleContext['users'],
      stores: access,
      logger: pino({ level: 'silent' }),
      metrics: new Registry(),
      pools: {} as OutgoingPools,
      features,
    };
    storage = await definition.openData!(access, validated);
    instance = await definition.create(ctx, validated, storage);
    for (const reg of instance.hooks!()) hooks.add(reg);
  }

  function online(full: string, priority = 0) {
    const got: Element[] = [];
    const s = { jid: parseJid(full), priority, available: true, interested: false, presence: null, got, send: (el: Element) => got.push(el), disconnect: () => {} };
    sessions.set(full, s);
    return s;
  }

  function sendOffline(body: string, type = 'chat'): boolean {
    const packet = new Element('message', { from: bob.full, to: alice.bare, type });
    packet.c('body').t(body);
    return hooks.run('offline_message', alice.domain, { acc: acc(bob, alice, packet), from: bob, to: alice, packet });
  }

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'petrel-offline-'));
    access = openStoreAccess({ sqliteFile: join(dir, 'petrel.sqlite') });
    hooks = new Hooks((err) => {
      throw err;
    });
    bounced = [];
    sessions = new Map();
    features = new Set();
  });

  afterEach(async () => {
    await instance?.stop?.();
    instance = undefined;
    await access.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('max_messages defaults to 100, max_bytes to 1 MiB, access_max_user_messages to MongooseIM\'s rule name, and unknown options are rejected', () => {
    const ctx = { configDir: '/', warnings: [] };
    assert.deepEqual(validate(definition.configSpec, undefined, 'modules.mod_offline', ctx), { max_messages: 100, max_bytes: 1_048_576, access_max_user_messages: 'max_user_offline_messages', backend: 'internal' });
    assert.throws(() => validate(definition.configSpec, { store_type: 'x' }, 'modules.mod_offline', ctx), /modules\.mod_offline\.store_type: unknown option/);
    assert.throws(() => validate(definition.configSpec, { max_messages: 0 }, 'modules.mod_offline', ctx), /max_messages/);
  });

  test('the msgoffline feature is announced', async () => {
    await start();
    assert.ok(features.has('msgoffline'));
  });

  test('a stored message stops the hook and is kept with a delay stamp', async () => {
    await start();
    assert.equal(sendOffline('one'), false);
    await instance!.stop!();
    const [m] = await storage.store.popAll('alice', 'example.com');
    const el = parseElement(m!.xml);
    assert.equal(el.getChildText('body'), 'one');
    assert.equal(el.attrs.from, bob.full);
    assert.equal(el.getChild('delay', 'urn:xmpp:delay')!.attrs.stamp, '2024-01-01T00:00:00.000Z');
    assert.equal(m!.from, bob.full);
  });

  test('a headline is not stopped and not stored', async () => {
    await start();
    assert.equal(sendOffline('news', 'headline'), true);
    await instance!.stop!();
    assert.equal(await storage.store.count('alice', 'example.com'), 0);
  });

  test('messages beyond max_messages are bounced with resource-constraint and the rest are kept in order', async () => {
    await start({ max_messages: 3 });
    for (let i = 1; i <= 5; i++) assert.equal(sendOffline(`m${i}`), false);
    await instance!.stop!();
    assert.deepEqual(bounced.map((b) => [b.packet.getChildText('body'), b.condition, b.type]), [
      ['m4', 'resource-constraint', 'wait'],
      ['m5', 'resource-constraint', 'wait'],
    ]);
    const kept = await storage.store.popAll('alice', 'example.com');
    assert.deepEqual(kept.map((m) => parseElement(m.xml).getChildText('body')), ['m1', 'm2', 'm3']);
  });

  test('stored messages are handed to the session that comes online, in order, and only once', async () => {
    await start();
    for (const b of ['a', 'b', 'c']) sendOffline(b);
    const s = online('alice@example.com/laptop');
    hooks.run('user_available', 'example.com', { jid: s.jid });
    await instance!.stop!();
    assert.deepEqual(s.got.map((el) => el.getChildText('body')), ['a', 'b', 'c']);
    assert.ok(s.got.every((el) => el.getChild('delay', 'urn:xmpp:delay') !== undefined));
    assert.equal(await storage.store.count('alice', 'example.com'), 0);

    const other = online('alice@example.com/phone');
    hooks.run('user_available', 'example.com', { jid: other.jid });
    await instance!.stop!();
    assert.deepEqual(other.got, []);
  });

  test('a large hand-over yields to the event loop between bounded steps, even when the connection takes everything at once', async () => {
    await start();
    const big = '<'.repeat(40_000);
    for (let i = 0; i < 6; i++) sendOffline(`${i}${big}`);
    const s = online('alice@example.com/laptop');
    const seen: number[] = [];
    Object.assign(s, { drained: () => Promise.resolve(true) });
    hooks.run('user_available', 'example.com', { jid: s.jid });
    // Other work queued now runs while the hand-over is still going on.
    await new Promise((r) => setImmediate(r));
    seen.push(s.got.length);
    await instance!.stop!();
    assert.ok(seen[0]! < 6, `all ${seen[0]} messages were handed over before other work could run`);
    assert.deepEqual(s.got.map((el) => el.getChildText('body')), [0, 1, 2, 3, 4, 5].map((i) => `${i}${big}`));
    assert.equal(await storage.store.count('alice', 'example.com'), 0);
  });

  test('a session that ends during the hand-over keeps what it was not given, in order, for the next login; nothing is given twice', async () => {
    await start();
    const body = 'x'.repeat(20_000);
    for (let i = 0; i < 8; i++) sendOffline(`${i}${body}`);
    const s = online('alice@example.com/laptop');
    let ended = false;
    Object.assign(s, {
      send: (el: Element) => {
        s.got.push(el);
        // Ends once it has taken three: the next check finds it gone.
        if (s.got.length === 3) {
          ended = true;
          sessions.delete(s.jid.full);
        }
      },
      drained: () => Promise.resolve(!ended),
    });
    hooks.run('user_available', 'example.com', { jid: s.jid });
    await instance!.stop!();
    assert.deepEqual(s.got.map((el) => el.getChildText('body')), [0, 1, 2].map((i) => `${i}${body}`));
    assert.equal(await storage.store.count('alice', 'example.com'), 5);

    const next = online('alice@example.com/phone');
    hooks.run('user_available', 'example.com', { jid: next.jid });
    await instance!.stop!();
    assert.deepEqual(next.got.map((el) => el.getChildText('body')), [3, 4, 5, 6, 7].map((i) => `${i}${body}`));
    assert.equal(await storage.store.count('alice', 'example.com'), 0);
  });

  test('a stored message that cannot be read back, even a large one, is skipped and the rest are handed over', async () => {
    await start();
    sendOffline('before');
    await instance!.stop!();
    await storage.store.store('alice', 'example.com', { xml: `<message from='bob@example.com/phone' type='chat'><body>${'y'.repeat(100_000)}</bodyx></message>`, from: bob.full, timestamp: 0 });
    sendOffline('after');
    const s = online('alice@example.com/laptop');
    hooks.run('user_available', 'example.com', { jid: s.jid });
    await instance!.stop!();
    assert.deepEqual(s.got.map((el) => el.getChildText('body')), ['before', 'after']);
  });

  test('a session with negative priority does not take the stored messages', async () => {
    await start();
    sendOffline('kept');
    const s = online('alice@example.com/bot', -1);
    hooks.run('user_available', 'example.com', { jid: s.jid });
    await instance!.stop!();
    assert.deepEqual(s.got, []);
    assert.equal(await storage.store.count('alice', 'example.com'), 1);
  });

  test('messages stay stored when the session is already gone', async () => {
    await start();
    sendOffline('kept');
    hooks.run('user_available', 'example.com', { jid: parseJid('alice@example.com/gone') });
    await instance!.stop!();
    assert.equal(await storage.store.count('alice', 'example.com'), 1);
  });

  test('user_removed deletes the removed user\'s stored messages and nobody else\'s', async () => {
    await start();
    sendOffline('for alice');
    await instance!.stop!();
    await storage.store.store('carol', 'example.com', { xml: '<message/>', from: bob.full, timestamp: 1 });
    for (const reg of storage.hooks()) hooks.add(reg);
    await removeUserData(hooks, 'alice', 'example.com');
    assert.equal(await storage.store.count('alice', 'example.com'), 0);
    assert.equal(await storage.store.count('carol', 'example.com'), 1);
  });
});
