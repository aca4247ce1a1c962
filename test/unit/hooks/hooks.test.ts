import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Hooks, STOP, type HookResult } from '../../../src/hooks/hooks.ts';
import type { HookName } from '../../../src/hooks/catalogue.ts';
import { parseJid } from '../../../src/xmpp/jid.ts';
import { Element } from '../../../src/xmpp/xml.ts';

type Reported = { err: unknown; hook: HookName; owner: string };

function setup() {
  const reported: Reported[] = [];
  const hooks = new Hooks((err, hook, owner) => reported.push({ err, hook, owner }));
  const calls: string[] = [];
  const add = (owner: string, priority: number, result?: HookResult | (() => HookResult), host = '*') =>
    hooks.add({
      hook: 'user_available',
      host,
      priority,
      owner,
      handler: () => {
        calls.push(owner);
        return typeof result === 'function' ? result() : result;
      },
    });
  return { hooks, reported, calls, add };
}

const params = { jid: parseJid('alice@localhost/desk') };

test('handlers run in ascending priority, whatever the order they were added in', () => {
  const { hooks, calls, add } = setup();
  add('late', 90);
  add('early', 10);
  add('middle', 50);
  assert.equal(hooks.run('user_available', 'localhost', params), true);
  assert.deepEqual(calls, ['early', 'middle', 'late']);
});

test('handlers of equal priority run in the order they were added', () => {
  const { hooks, calls, add } = setup();
  add('first', 50);
  add('second', 50);
  add('third', 50);
  hooks.run('user_available', 'localhost', params);
  assert.deepEqual(calls, ['first', 'second', 'third']);
});

test('a handler returning STOP ends the fold and the run reports it', () => {
  const { hooks, calls, add } = setup();
  add('a', 10);
  add('stopper', 20, STOP);
  add('never', 30);
  assert.equal(hooks.run('user_available', 'localhost', params), false);
  assert.deepEqual(calls, ['a', 'stopper']);
});

test('a handler that throws is reported to the error sink and the next handler still runs', () => {
  const { hooks, calls, reported, add } = setup();
  const boom = new Error('boom');
  add('before', 10);
  add('thrower', 20, () => {
    throw boom;
  });
  add('after', 30);
  assert.equal(hooks.run('user_available', 'localhost', params), true);
  assert.deepEqual(calls, ['before', 'thrower', 'after']);
  assert.deepEqual(reported, [{ err: boom, hook: 'user_available', owner: 'thrower' }]);
});

test('a handler registered for one host does not run for another, and "*" runs for all', () => {
  const { hooks, calls, add } = setup();
  add('any', 10, undefined, '*');
  add('here', 20, undefined, 'localhost');
  add('there', 30, undefined, 'example.org');
  hooks.run('user_available', 'localhost', params);
  assert.deepEqual(calls, ['any', 'here']);
  calls.length = 0;
  hooks.run('user_available', 'example.org', params);
  assert.deepEqual(calls, ['any', 'there']);
});

test('a hook with no handlers runs to the end', () => {
  const { hooks } = setup();
  assert.equal(hooks.has('user_available'), false);
  assert.equal(hooks.run('user_available', 'localhost', params), true);
});

test('removing an owner removes all of its handlers', () => {
  const { hooks, calls, add } = setup();
  add('keep', 10);
  add('drop', 20);
  add('drop', 30);
  hooks.remove('drop');
  hooks.run('user_available', 'localhost', params);
  assert.deepEqual(calls, ['keep']);
});

test('every handler receives the parameters the hook was run with', () => {
  const { hooks } = setup();
  const seen: unknown[] = [];
  hooks.add({ hook: 'user_available', host: '*', priority: 1, owner: 'x', handler: (p) => void seen.push(p) });
  hooks.run('user_available', 'localhost', params);
  assert.equal(seen[0], params);
});

test('a fold hands each handler the accumulator the one before returned, and returns the last', async () => {
  const hooks = new Hooks(() => {});
  const order: string[] = [];
  const p1 = Promise.resolve('one');
  hooks.add({ hook: 'user_send_message', host: '*', priority: 10, owner: 'first', handler: (_p, acc) => { order.push(`first saw ${String(acc)}`); return p1; } });
  hooks.add({ hook: 'user_send_message', host: '*', priority: 20, owner: 'idle', handler: (_p, acc) => { order.push(`idle saw ${acc === p1 ? 'p1' : String(acc)}`); } });
  hooks.add({ hook: 'user_send_message', host: '*', priority: 30, owner: 'last', handler: (_p, acc) => { order.push(`last saw ${acc === p1 ? 'p1' : String(acc)}`); return Promise.all([acc, 'two']); } });
  const jid = parseJid('alice@localhost/desk');
  const packet = new Element('message');
  const acc = { ref: 'r', timestamp: 0, hostType: 'localhost', lserver: 'localhost', element: packet, from: jid, to: jid };
  const r = hooks.fold('user_send_message', 'localhost', { acc, from: jid, to: jid, packet }, undefined);
  assert.deepEqual(order, ['first saw undefined', 'idle saw p1', 'last saw p1']);
  assert.ok(r instanceof Promise);
  assert.deepEqual(await r, ['one', 'two']);
});

test('a fold stopped by a handler returns STOP, and later handlers do not run', () => {
  const hooks = new Hooks(() => {});
  let later = false;
  hooks.add({ hook: 'user_send_message', host: '*', priority: 10, owner: 'stopper', handler: () => STOP });
  hooks.add({ hook: 'user_send_message', host: '*', priority: 20, owner: 'later', handler: () => { later = true; } });
  const jid = parseJid('alice@localhost/desk');
  const packet = new Element('message');
  const acc = { ref: 'r', timestamp: 0, hostType: 'localhost', lserver: 'localhost', element: packet, from: jid, to: jid };
  assert.equal(hooks.fold('user_send_message', 'localhost', { acc, from: jid, to: jid, packet }, undefined), STOP);
  assert.equal(later, false);
});
