// The session's state machine over an in-memory transport, with the real
// byte-stream framing, router, presence, hooks and a SQLite store: stream
// opening, SASL, binding, routing between two sessions, the slow-reader
// limit, state_timeout and stream errors, without a socket in between.
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { C2SSession, framingLimits, type C2SContext, type C2SLimits } from '../../../src/c2s/session.ts';
import { refusalError } from '../../../src/c2s/connection-limits.ts';
import { byteStreamFraming } from '../../../src/c2s/byte-stream-framing.ts';
import { AuthBans } from '../../../src/c2s/auth-bans.ts';
import { Hooks, STOP } from '../../../src/hooks/hooks.ts';
import { Router } from '../../../src/routing/router.ts';
import { NO_ROSTER, Presence } from '../../../src/routing/presence.ts';
import { SessionManager } from '../../../src/routing/sm.ts';
import { openStoreAccess, type OpenStoreAccess } from '../../../src/storage/open.ts';
import { ACCOUNTS } from '../../../src/storage/accounts.ts';
import type { UserStore } from '../../../src/storage/types.ts';
import { makeStoredCredentials } from '../../../src/xmpp/sasl/index.ts';
import type { Element } from '../../../src/xmpp/xml.ts';
import { MemoryTransport } from './memory-transport.ts';
import { SenderRates } from '../../../src/c2s/sender-rates.ts';

const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
const NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind';
const HEADER = "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
const LIMITS: C2SLimits = {
  preAuthStanzaSize: 8192,
  preAuthElements: 16,
  maxDepth: 64,
  maxAuthFailures: 3,
  stateTimeout: 30_000,
  handshakeTimeout: 10_000,
  maxOutputBuffer: 1_048_576,
  sendTimeout: 15_000,
  negotiationTimeout: 60_000,
  inputSlice: 8192,
  routingBacklog: 32,
  heavySender: { factor: 8, minBytes: 6554 },
};

type LogLine = Record<string, unknown> & { what?: string };

let dir: string;
let access: OpenStoreAccess;
let users: UserStore;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'petrel-c2s-unit-'));
  access = openStoreAccess({ sqliteFile: join(dir, 'petrel.sqlite') });
  users = await access.open(ACCOUNTS, 'internal', 'auth.methods');
  const creds = await makeStoredCredentials('secret', { format: 'plain', iterations: 4096 });
  for (const u of ['alice', 'bob']) await users.createUser(u, 'localhost', creds);
});

after(async () => {
  await access.close();
  rmSync(dir, { recursive: true, force: true });
});

/** One server's worth of routing, with its own hooks and log lines. */
function world(limits: Partial<C2SLimits> = {}, extra: Partial<C2SContext> = {}) {
  const logs: LogLine[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void logs.push(JSON.parse(s) as LogLine) });
  const hooks = new Hooks((err) => {
    throw err;
  });
  const sm = new SessionManager(10);
  const router = new Router({ hosts: ['localhost'], hooks, sm, users, logger });
  const presence = new Presence({ router, sm, roster: NO_ROSTER, users, hooks, logger });
  router.presence = presence;
  const all = { ...LIMITS, ...limits };
  const ctx: C2SContext = {
    hosts: new Set(['localhost']),
    defaultDomain: 'localhost',
    mechanisms: ['PLAIN'],
    scramIterations: 4096,
    users,
    sm,
    router,
    presence,
    hooks,
    logger,
    limits: all,
    framing: byteStreamFraming,
    framingLimits: framingLimits(65_536, all),
    tlsRequired: false,
    maxRate: 0,
    authBans: new AuthBans(0, 0),
    ...extra,
  };
  const sessions: Array<{ session: C2SSession; t: MemoryTransport }> = [];
  return {
    ctx,
    logs,
    hooks,
    sm,
    /** A session over a fresh in-memory transport. */
    connect(o: { reading?: boolean; secure?: boolean; address?: string } = {}) {
      const t = new MemoryTransport(o);
      const session = new C2SSession(t, ctx);
      sessions.push({ session, t });
      return { session, t };
    },
    async login(user: string, resource: string, o: { reading?: boolean } = {}) {
      const c = this.connect(o);
      c.t.send(HEADER);
      await c.t.waitFor('</stream:features>');
      c.t.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${Buffer.from(`\0${user}\0secret`).toString('base64')}</auth>`);
      await c.t.waitFor(/<success[^>]*\/>|<\/success>/);
      c.t.send(HEADER);
      await c.t.waitFor('</stream:features>');
      c.t.send(`<iq type='set' id='b1'><bind xmlns='${NS_BIND}'><resource>${resource}</resource></bind></iq>`);
      await c.t.waitFor('</iq>');
      return c;
    },
    close() {
      for (const { t } of sessions) t.destroy();
    },
  };
}

function waitForLog(logs: LogLine[], pred: (l: LogLine) => boolean, ms = 5000): Promise<LogLine> {
  const deadline = performance.now() + ms;
  return new Promise((resolve, reject) => {
    const poll = () => {
      const l = logs.find(pred);
      if (l !== undefined) resolve(l);
      else if (performance.now() > deadline) reject(new Error('no such log line; got: ' + logs.map((x) => x.what).join(', ')));
      else setTimeout(poll, 5);
    };
    poll();
  });
}

describe('the c2s session over an in-memory transport', () => {
  let w: ReturnType<typeof world>;
  afterEach(() => w?.close());

  /**
   * A world whose sessions are metered by a SenderRates with manual windows
   * (factor 8, floor 500 bytes, backlog 16), counting each sender's messages
   * by its bare or full JID; once `hold` is set, each message's commit waits
   * for `release`.
   */
  function heavyWorld(by: 'bare' | 'full') {
    const rates = new SenderRates(undefined, 0);
    w = world({ routingBacklog: 16, heavySender: { factor: 8, minBytes: 500 } }, { senderRates: rates });
    let release: () => void = () => {};
    const commit = new Promise<void>((r) => (release = r));
    const seen = new Map<string, number>();
    const h = { rates, seen, hold: false, release: () => release() };
    w.hooks.add({ hook: 'user_send_message', host: '*', priority: 10, owner: 'test', handler: (acc) => {
      const from = acc.from[by];
      seen.set(from, (seen.get(from) ?? 0) + 1);
      return h.hold ? commit : undefined;
    } });
    return h;
  }

  test('the stream opens with a header from the served domain and features offering SASL, and no STARTTLS where the transport has none', async () => {
    w = world();
    const { t, session } = w.connect();
    assert.equal(session.state, 'header');
    t.send(HEADER);
    const opened = await t.waitFor('</stream:features>');
    assert.match(opened, /^<\?xml version='1.0'\?><stream:stream xmlns='jabber:client' xmlns:stream='http:\/\/etherx.jabber.org\/streams' id='[0-9a-f]{16}' from='localhost' version='1.0' xml:lang='en'>/);
    assert.match(opened, /<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN<\/mechanism><\/mechanisms>/);
    assert.doesNotMatch(opened, /starttls/);
    assert.equal(session.state, 'auth');
    // Asking for it anyway is refused, and the stream closes (RFC 6120 §5.4.2.2).
    t.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    await t.waitFor("<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>");
    await t.closedPromise;
  });

  test('SASL PLAIN with the right password succeeds, and the restarted stream offers binding', async () => {
    w = world();
    const { t, session } = w.connect();
    t.send(HEADER);
    await t.waitFor('</stream:features>');
    t.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${Buffer.from('\0alice\0secret').toString('base64')}</auth>`);
    await t.waitFor(`<success xmlns='${NS_SASL}'></success>`);
    assert.equal(session.state, 'bind');
    await waitForLog(w.logs, (l) => l.what === 'c2s_auth_ok' && l.user === 'alice');
    t.send(HEADER);
    const features = await t.waitFor('</stream:features>');
    assert.match(features, /<stream:stream /);
    assert.match(features, /<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'\/>/);
    assert.doesNotMatch(features, /<mechanisms/);
  });

  test('failed SASL attempts are answered with not-authorized and counted; at max_auth_failures the stream is closed', async () => {
    w = world({ maxAuthFailures: 2 });
    const { t, session } = w.connect();
    t.send(HEADER);
    await t.waitFor('</stream:features>');
    const wrong = `<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${Buffer.from('\0alice\0wrong').toString('base64')}</auth>`;
    t.send(wrong);
    await t.waitFor(`<failure xmlns='${NS_SASL}'><not-authorized/></failure>`);
    assert.equal(session.state, 'auth');
    t.send(wrong);
    const last = await t.waitFor('</stream:stream>');
    assert.match(last, /<not-authorized\/><\/failure><stream:error><policy-violation xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/>/);
    assert.match(last, /too many failed authentication attempts/);
    await t.closedPromise;
    assert.equal(session.state, 'closed');
    assert.equal(w.logs.filter((l) => l.what === 'c2s_auth_failed').length, 2);
  });

  test('binding gives the full JID and registers the session', async () => {
    w = world();
    const { t, session } = await w.login('alice', 'desk');
    assert.match(t.received, /<iq type="result" id="b1"><bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"><jid>alice@localhost\/desk<\/jid><\/bind><\/iq>/);
    assert.equal(session.state, 'bound');
    assert.equal(session.jid.full, 'alice@localhost/desk');
    assert.equal(w.sm.byFull('alice@localhost/desk'), session);
  });

  test('a message from one in-memory session reaches another, stamped with the sender\'s full JID', async () => {
    w = world();
    const alice = await w.login('alice', 'desk');
    const bob = await w.login('bob', 'phone');
    alice.t.send("<message to='bob@localhost/phone' type='chat' id='m1' from='alice@localhost'><body>hello</body></message>");
    const got = await bob.t.waitFor('</message>');
    assert.match(got, /<message to="bob@localhost\/phone" type="chat" id="m1" from="alice@localhost\/desk"><body>hello<\/body><\/message>/);
    // The client ends its side: the session closes and leaves the session manager.
    bob.t.sendEnd();
    await bob.t.closedPromise;
    assert.equal(w.sm.byFull('bob@localhost/phone'), undefined);
  });

  test("another user's messages to a client that stops reading come back with resource-constraint, and the client is not disconnected for them", async () => {
    w = world({ maxOutputBuffer: 4096, sendTimeout: 0 });
    const alice = await w.login('alice', 'desk');
    const bob = await w.login('bob', 'stalled');
    bob.t.reading = false;
    const body = 'x'.repeat(1000);
    for (let i = 1; i <= 50; i++) {
      alice.t.send(`<message to='bob@localhost/stalled' type='chat' id='s${i}'><body>${body}</body></message>`);
      await new Promise((r) => setImmediate(r));
    }
    const bounces = () => alice.t.received.split('<resource-constraint').length - 1;
    // Others fill at most half of the cap (two of these messages); the rest come back.
    await waitForLog(w.logs, () => bounces() >= 10);
    assert.equal(bob.t.closed, false);
    assert.notEqual(w.sm.byFull('bob@localhost/stalled'), undefined);
    assert.equal(w.logs.some((l) => l.what === 'c2s_slow_reader'), false);
  });

  test('a client whose own output passes max_output_buffer while earlier output waits is disconnected and its undelivered messages go to offline storage', async () => {
    w = world({ maxOutputBuffer: 4096, sendTimeout: 0 });
    const offline: Element[] = [];
    w.hooks.add({
      hook: 'offline_message',
      host: '*',
      priority: 50,
      owner: 'test',
      handler: ({ packet }) => {
        offline.push(packet);
        return STOP;
      },
    });
    const alice = await w.login('alice', 'desk');
    const bob = await w.login('bob', 'stalled');
    // Bob's client stops reading: what the session writes stays buffered in the transport.
    bob.t.reading = false;
    alice.t.send(`<message to='bob@localhost/stalled' type='chat' id='s1'><body>${'x'.repeat(1000)}</body></message>`);
    await new Promise((r) => setImmediate(r));
    let pings = 0;
    while (!bob.t.closed && pings < 200) {
      bob.t.send(`<iq type='get' id='p${++pings}' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`);
      await new Promise((r) => setImmediate(r));
    }
    const kicked = await waitForLog(w.logs, (l) => l.what === 'c2s_slow_reader');
    assert.equal(kicked.jid, 'bob@localhost/stalled');
    assert.match(String(kicked.reason), /more than 4096 bytes wait to be sent/);
    assert.ok(Number(kicked.rerouted) > 0, 'messages the transport had not taken were routed again');
    await bob.t.closedPromise;
    assert.equal(w.sm.byFull('bob@localhost/stalled'), undefined);
    // What was sent after the disconnect goes offline as well.
    alice.t.send("<message to='bob@localhost/stalled' type='chat' id='late'><body>later</body></message>");
    await waitForLog(w.logs, () => offline.some((m) => m.attrs.id === 'late'));
    const ids = new Set(offline.map((m) => m.attrs.id));
    assert.ok(ids.has('s1') && ids.has('late'));
    // None of those was ever read by bob's client.
    bob.t.read();
    for (const id of ids) assert.doesNotMatch(bob.t.received, new RegExp(`id="${id}"`));
  });

  test('a client that takes nothing for send_timeout while output waits is disconnected', async () => {
    w = world({ sendTimeout: 120 });
    const alice = await w.login('alice', 'desk');
    const bob = await w.login('bob', 'asleep');
    bob.t.reading = false;
    alice.t.send("<message to='bob@localhost/asleep' type='chat' id='z1'><body>are you there</body></message>");
    const kicked = await waitForLog(w.logs, (l) => l.what === 'c2s_slow_reader', 3000);
    assert.match(String(kicked.reason), /nothing could be sent for 120 ms/);
    assert.equal(kicked.rerouted, 1);
    await bob.t.closedPromise;
  });

  test('a sender whose messages wait for their commit has at most 32 of them waiting: its input is not read or parsed further until they are routed, and then every message arrives in order', async () => {
    w = world();
    let release: () => void = () => {};
    const commit = new Promise<void>((r) => (release = r));
    let seen = 0;
    w.hooks.add({ hook: 'user_send_message', host: '*', priority: 10, owner: 'test', handler: () => {
      seen++;
      return commit;
    } });
    const alice = await w.login('alice', 'desk');
    const bob = await w.login('bob', 'phone');
    // One read each, then one read holding many: nothing past the backlog is parsed.
    for (let i = 1; i <= 40; i++) alice.t.send(`<message to='bob@localhost/phone' type='chat' id='a${i}'><body>${i}</body></message>`);
    let many = '';
    for (let i = 41; i <= 200; i++) many += `<message to='bob@localhost/phone' type='chat' id='a${i}'><body>${i}</body></message>`;
    alice.t.send(many);
    for (let k = 0; k < 5; k++) await new Promise((r) => setImmediate(r));
    assert.equal(seen, 32);
    assert.equal(alice.t.paused, true);
    assert.doesNotMatch(bob.t.received, /<message/);
    release();
    await bob.t.waitFor(/id="a200"/);
    const ids = [...bob.t.received.matchAll(/<message [^>]*id="a(\d+)"/g)].map((m) => Number(m[1]));
    assert.deepEqual(ids, Array.from({ length: 200 }, (_, i) => i + 1));
    assert.equal(seen, 200);
  });

  test('routing_backlog sets how many messages may wait for their commit; a sender far above the others may have a quarter of them, and every message still arrives in order', async () => {
    const h = heavyWorld('bare');
    const { rates, seen, release } = h;
    const alice = await w.login('alice', 'desk');
    const bob = await w.login('bob', 'phone');
    const msg = (to: string, id: string, body: string) => `<message to='${to}' type='chat' id='${id}'><body>${body}</body></message>`;
    // A window in which alice sent eleven times as much as bob.
    alice.t.send(msg('bob@localhost/phone', 'w0', 'x'.repeat(1000)));
    bob.t.send(msg('alice@localhost/desk', 'w0', 'y'));
    await bob.t.waitFor(/id="w0"/);
    await alice.t.waitFor(/id="w0"/);
    rates.tick();
    h.hold = true;
    for (let i = 1; i <= 40; i++) {
      alice.t.send(msg('bob@localhost/phone', `a${i}`, String(i)));
      bob.t.send(msg('alice@localhost/desk', `b${i}`, String(i)));
    }
    for (let k = 0; k < 5; k++) await new Promise((r) => setImmediate(r));
    assert.equal(seen.get('alice@localhost'), 1 + 4);
    assert.equal(seen.get('bob@localhost'), 1 + 16);
    release();
    await bob.t.waitFor(/id="a40"/);
    await alice.t.waitFor(/id="b40"/);
    const ids = (t: MemoryTransport, p: string) => [...t.received.matchAll(new RegExp(`<message [^>]*id="${p}(\\d+)"`, 'g'))].map((m) => Number(m[1]));
    assert.deepEqual(ids(bob.t, 'a'), Array.from({ length: 40 }, (_, i) => i + 1));
    assert.deepEqual(ids(alice.t, 'b'), Array.from({ length: 40 }, (_, i) => i + 1));
    rates.stop();
  });

  test('the sessions of one account are one sender: a flood spread over three connections makes each of them heavy, and every message arrives in order', async () => {
    const h = heavyWorld('full');
    const { rates, seen, release } = h;
    const resources = ['desk', 'phone', 'tab'];
    const alice = await Promise.all(resources.map((r) => w.login('alice', r)));
    const bob = await w.login('bob', 'phone');
    assert.equal(rates.accounts, 2);
    const msg = (to: string, id: string, body: string) => `<message to='${to}' type='chat' id='${id}'><body>${body}</body></message>`;
    // A window in which each of alice's sessions sent less than the floor (500
    // bytes) and four times what bob sent, and alice, all three together, over
    // eight times bob's.
    for (const a of alice) a.t.send(msg('bob@localhost/phone', 'w0', 'x'.repeat(220)));
    bob.t.send(msg('alice@localhost/desk', 'w0', 'y'));
    await bob.t.waitFor(/id="w0"[\s\S]*id="w0"[\s\S]*id="w0"/);
    await alice[0]!.t.waitFor(/id="w0"/);
    rates.tick();
    h.hold = true;
    for (let i = 1; i <= 40; i++) {
      for (const a of alice) a.t.send(msg('bob@localhost/phone', `a${i}`, String(i)));
      bob.t.send(msg('alice@localhost/desk', `b${i}`, String(i)));
    }
    for (let k = 0; k < 5; k++) await new Promise((r) => setImmediate(r));
    for (const r of resources) assert.equal(seen.get(`alice@localhost/${r}`), 1 + 4, r);
    assert.equal(seen.get('bob@localhost/phone'), 1 + 16);
    release();
    await alice[0]!.t.waitFor(/id="b40"/);
    await bob.t.waitFor(/id="a40"[\s\S]*id="a40"[\s\S]*id="a40"/);
    const ids = [...bob.t.received.matchAll(/<message [^>]*from="alice@localhost\/(\w+)"[^>]*id="a(\d+)"|<message [^>]*id="a(\d+)"[^>]*from="alice@localhost\/(\w+)"/g)];
    for (const r of resources) {
      const mine = ids.filter((m) => (m[1] ?? m[4]) === r).map((m) => Number(m[2] ?? m[3]));
      assert.deepEqual(mine, Array.from({ length: 40 }, (_, i) => i + 1), r);
    }
    // The meter goes with the account's last session.
    alice[0]!.t.destroy();
    alice[1]!.t.destroy();
    await new Promise((r) => setImmediate(r));
    assert.equal(rates.accounts, 2);
    alice[2]!.t.destroy();
    await new Promise((r) => setImmediate(r));
    assert.equal(rates.accounts, 1);
    rates.stop();
  });

  test('past the shaper\'s max_rate the transport is not read until the budget has refilled', async () => {
    w = world();
    w.ctx.maxRate = 1000;
    const { t } = w.connect();
    t.send(HEADER);
    await t.waitFor('</stream:features>');
    assert.equal(t.paused, false);
    // Well past one second's budget: reading stops, and what comes meanwhile waits in the transport.
    t.send(' '.repeat(1500));
    assert.equal(t.paused, true);
    t.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='NOPE'/>");
    await new Promise((r) => setTimeout(r, 100));
    assert.doesNotMatch(t.received, /<failure/);
    // About half a second later the budget is back and the waiting input is read.
    await t.waitFor('<invalid-mechanism/>', 3000);
  });

  test('a shaper given by an access rule (c2s_shaper) shapes each user as the rule says once authenticated', async () => {
    w = world();
    // As `shaper = "c2s_shaper"` with [{acl = "admin" (bob), value = "none"}, {acl = "all", value = "normal"}]: before authentication, "normal" for everyone.
    w.ctx.maxRate = 1_000_000;
    w.ctx.rateFor = (s) => (s.local === 'bob' ? 0 : 1000);
    const alice = await w.login('alice', 'phone');
    const bob = await w.login('bob', 'phone');
    alice.t.send(' '.repeat(1500));
    assert.equal(alice.t.paused, true);
    bob.t.send(' '.repeat(1500));
    assert.equal(bob.t.paused, false);
  });

  test('a client that does not take the next step within state_timeout gets connection-timeout', async () => {
    w = world({ stateTimeout: 150 });
    const { t, session } = w.connect();
    t.send(HEADER);
    await t.waitFor('</stream:features>');
    const t0 = performance.now();
    const text = await t.waitFor('</stream:stream>', 3000);
    assert.ok(performance.now() - t0 >= 100);
    assert.match(text, /<stream:error><connection-timeout xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/>/);
    await t.closedPromise;
    assert.equal(session.state, 'closed');
  });

  test('a stream error is sent after the stream header and ends the stream and the connection', async () => {
    w = world();
    const { t, session } = w.connect();
    // A stanza before authentication (RFC 6120 §6.4): not-authorized.
    t.send(HEADER + "<message to='bob@localhost'><body>hi</body></message>");
    const text = await t.waitFor('</stream:stream>');
    assert.match(text, /^<\?xml version='1.0'\?><stream:stream [^>]*><stream:features>.*<\/stream:features><stream:error><not-authorized xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/>.*<\/stream:error><\/stream:stream>$/);
    await t.closedPromise;
    assert.equal(session.state, 'closed');
    const line = await waitForLog(w.logs, (l) => l.what === 'c2s_stream_error');
    assert.equal(line.condition, 'not-authorized');
  });

  test('bad XML before any header is answered with a header of our own, then the error', async () => {
    w = world();
    const { t } = w.connect();
    t.send('<stream:stream><<');
    const text = await t.waitFor('</stream:stream>');
    assert.match(text, /<stream:stream [^>]*from='localhost'[^>]*><stream:error><(invalid-namespace|not-well-formed) /);
    await t.closedPromise;
  });

  test('a session made for a refused connection sends only its stream error and closes', async () => {
    w = world();
    const t = new MemoryTransport({});
    const session = new C2SSession(t, w.ctx, refusalError('address_limit'));
    const text = await t.waitFor('</stream:stream>');
    assert.match(text, /<stream:error><policy-violation xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/>/);
    assert.doesNotMatch(text, /<stream:features>/);
    await t.closedPromise;
    assert.equal(session.state, 'closed');
  });

  test('a client taking step after step within state_timeout is closed once negotiation_timeout has passed', async () => {
    w = world({ stateTimeout: 200, negotiationTimeout: 400, maxAuthFailures: 1000 });
    const { t } = w.connect();
    t.send(HEADER);
    await t.waitFor('</stream:features>');
    const timer = setInterval(() => t.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'/>`), 50);
    try {
      const text = await t.waitFor('</stream:stream>', 5000);
      assert.match(text, /<connection-timeout [^>]*\/><text [^>]*>no resource bound within 400 ms of connecting/);
    } finally {
      clearInterval(timer);
    }
  });

  test('with allow_plaintext_auth off, a client on another machine is offered no SASL over an unencrypted stream and its <auth/> fails with encryption-required', async () => {
    w = world({}, { loopbackOnlyPlaintextAuth: true });
    const { t, session } = w.connect({ address: '192.0.2.1' });
    t.send(HEADER);
    const opened = await t.waitFor('</stream:features>');
    assert.doesNotMatch(opened, /<mechanisms/);
    t.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${Buffer.from('\0alice\0secret').toString('base64')}</auth>`);
    await t.waitFor(`<failure xmlns='${NS_SASL}'><encryption-required/>`);
    assert.equal(session.state, 'auth');
  });

  test('with allow_plaintext_auth off, a loopback client, and a client on another machine over TLS, may authenticate', async () => {
    w = world({}, { loopbackOnlyPlaintextAuth: true });
    for (const o of [{ address: '127.0.0.1' }, { address: '::1' }, { address: '::ffff:127.0.0.1' }, { address: '192.0.2.1', secure: true }]) {
      const { t, session } = w.connect(o);
      t.send(HEADER);
      const opened = await t.waitFor('</stream:features>');
      assert.match(opened, /<mechanism>PLAIN<\/mechanism>/, JSON.stringify(o));
      t.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${Buffer.from('\0alice\0secret').toString('base64')}</auth>`);
      await t.waitFor(`<success xmlns='${NS_SASL}'></success>`);
      assert.equal(session.state, 'bind', JSON.stringify(o));
    }
  });
});
