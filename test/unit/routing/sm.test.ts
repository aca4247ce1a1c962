// The session table over this node's sessions and other nodes' proxies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SessionManager, type ManagedSession, type SessionObserver } from '../../../src/routing/sm.ts';
import { parseJid } from '../../../src/xmpp/jid.ts';
import { Element } from '../../../src/xmpp/xml.ts';

function session(full: string, node?: string): ManagedSession & { kicked: string[] } {
  const kicked: string[] = [];
  return {
    jid: parseJid(full), clusterNode: node, priority: 0, available: true, interested: false, presence: null, kicked,
    send() {}, disconnect() {}, kick(c: string) { kicked.push(c); },
  } as ManagedSession & { kicked: string[] };
}

test('max_user_sessions counts other nodes\' sessions and replaces the oldest, wherever it is', () => {
  const sm = new SessionManager(2);
  const remote = session('u@d/a', 'node2');
  sm.addRemote(remote);
  const mid = session('u@d/b');
  sm.register(mid);
  const fresh = session('u@d/c');
  sm.register(fresh);
  assert.deepEqual(remote.kicked, ['conflict']);
  assert.deepEqual(mid.kicked, []);
  assert.deepEqual(sm.byBare('u@d').map((s) => s.jid.resource), ['b', 'c']);
});

test('a remote session with the full JID of a local one replaces it', () => {
  const sm = new SessionManager(10);
  const local = session('u@d/a');
  sm.register(local);
  const remote = session('u@d/a', 'node2');
  sm.addRemote(remote);
  assert.deepEqual(local.kicked, ['conflict']);
  assert.equal(sm.byFull('u@d/a'), remote);
  assert.equal(sm.count(), 1);
});

test('the observer hears of this node\'s sessions only, and a single node has none', () => {
  const sm = new SessionManager(10);
  const heard: string[] = [];
  const note = (what: string, s: ManagedSession) => {
    heard.push(`${what} ${s.jid.full}`);
  };
  const local = session('u@d/a');
  sm.register(local);
  sm.changed(local);
  sm.unregister(local);
  assert.equal(heard.length, 0);
  const obs: SessionObserver = { bound: (s) => note('bound', s), changed: (s) => note('changed', s), ended: (s) => note('ended', s) };
  sm.observer = obs;
  const remote = session('v@d/x', 'node2');
  sm.addRemote(remote);
  sm.changed(remote);
  sm.unregister(remote);
  sm.register(local);
  sm.changed(local);
  sm.unregister(local);
  assert.deepEqual(heard, ['bound u@d/a', 'changed u@d/a', 'ended u@d/a']);
  assert.equal(sm.localCount(), 0);
});

test('settled waits for the deliveries in flight from a sender, and only those', async () => {
  const sm = new SessionManager(10);
  assert.equal(sm.settled('u@d/a'), undefined);
  let release!: () => void;
  const p = new Promise<void>((r) => (release = r));
  sm.track('u@d/a', p);
  assert.equal(sm.settled('v@d/b'), undefined);
  const waiting = sm.settled('u@d/a');
  assert.ok(waiting !== undefined);
  let done = false;
  void waiting.then(() => (done = true));
  await new Promise((r) => setImmediate(r));
  assert.equal(done, false);
  release();
  await waiting;
  await new Promise((r) => setImmediate(r));
  assert.equal(sm.settled('u@d/a'), undefined);
});

test('a delivery\'s receipt goes to whoever takes it while the stanza is handed over, else stays the caller\'s', () => {
  const sm = new SessionManager(10);
  const buffered = new Element('message', { to: 'u@d/a' });
  let handled = 0;
  sm.expectReceipt(buffered, () => handled++);
  const r = sm.takeReceipt(buffered);
  assert.ok(r !== undefined);
  assert.equal(sm.takeReceipt(buffered), undefined, 'taken once');
  assert.equal(sm.dropReceipt(buffered), false, 'taken: not the caller\'s');
  r();
  assert.equal(handled, 1);
  const written = new Element('message', { to: 'u@d/b' });
  sm.expectReceipt(written, () => handled++);
  assert.equal(sm.dropReceipt(written), true, 'nobody took it');
  assert.equal(sm.takeReceipt(written), undefined);
  assert.equal(handled, 1);
});
