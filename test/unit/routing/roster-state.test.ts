import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  inbound,
  outbound,
  stateName,
  stateOf,
  NONE,
  type StateName,
  type SubType,
} from '../../../src/routing/roster-state.ts';

const ALL: StateName[] = [
  'None',
  'None + Pending Out',
  'None + Pending In',
  'None + Pending Out/In',
  'To',
  'To + Pending In',
  'From',
  'From + Pending Out',
  'Both',
];

// Each row: existing state, route/deliver?, new state (null = no state change),
// transcribed from the tables of RFC 6121 Appendix A.
type Row = [StateName, boolean, StateName | null];

const OUT: Record<SubType, Row[]> = {
  // A.2.1: always routed (§3.1.2).
  subscribe: [
    ['None', true, 'None + Pending Out'],
    ['None + Pending Out', true, null],
    ['None + Pending In', true, 'None + Pending Out/In'],
    ['None + Pending Out/In', true, null],
    ['To', true, null],
    ['To + Pending In', true, null],
    ['From', true, 'From + Pending Out'],
    ['From + Pending Out', true, null],
    ['Both', true, null],
  ],
  // A.2.2: always routed (§3.3.2).
  unsubscribe: [
    ['None', true, null],
    ['None + Pending Out', true, 'None'],
    ['None + Pending In', true, null],
    ['None + Pending Out/In', true, 'None + Pending In'],
    ['To', true, 'None'],
    ['To + Pending In', true, 'None + Pending In'],
    ['From', true, null],
    ['From + Pending Out', true, 'From'],
    ['Both', true, 'From'],
  ],
  // A.2.3
  subscribed: [
    ['None', false, null],
    ['None + Pending Out', false, null],
    ['None + Pending In', true, 'From'],
    ['None + Pending Out/In', true, 'From + Pending Out'],
    ['To', false, null],
    ['To + Pending In', true, 'Both'],
    ['From', false, null],
    ['From + Pending Out', false, null],
    ['Both', false, null],
  ],
  // A.2.4
  unsubscribed: [
    ['None', false, null],
    ['None + Pending Out', false, null],
    ['None + Pending In', true, 'None'],
    ['None + Pending Out/In', true, 'None + Pending Out'],
    ['To', false, null],
    ['To + Pending In', true, 'To'],
    ['From', true, 'None'],
    ['From + Pending Out', true, 'None + Pending Out'],
    ['Both', true, 'To'],
  ],
};

const IN: Record<SubType, Row[]> = {
  // A.3.1 (From, From + Pending Out and Both are answered by the server, below)
  subscribe: [
    ['None', true, 'None + Pending In'],
    ['None + Pending Out', true, 'None + Pending Out/In'],
    ['None + Pending In', false, null],
    ['None + Pending Out/In', false, null],
    ['To', true, 'To + Pending In'],
    ['To + Pending In', false, null],
    ['From', false, null],
    ['From + Pending Out', false, null],
    ['Both', false, null],
  ],
  // A.3.2
  unsubscribe: [
    ['None', false, null],
    ['None + Pending Out', false, null],
    ['None + Pending In', true, 'None'],
    ['None + Pending Out/In', true, 'None + Pending Out'],
    ['To', false, null],
    ['To + Pending In', true, 'To'],
    ['From', true, 'None'],
    ['From + Pending Out', true, 'None + Pending Out'],
    ['Both', true, 'To'],
  ],
  // A.3.3
  subscribed: [
    ['None', false, null],
    ['None + Pending Out', true, 'To'],
    ['None + Pending In', false, null],
    ['None + Pending Out/In', true, 'To + Pending In'],
    ['To', false, null],
    ['To + Pending In', false, null],
    ['From', false, null],
    ['From + Pending Out', true, 'Both'],
    ['Both', false, null],
  ],
  // A.3.4
  unsubscribed: [
    ['None', false, null],
    ['None + Pending Out', true, 'None'],
    ['None + Pending In', false, null],
    ['None + Pending Out/In', true, 'None + Pending In'],
    ['To', true, 'None'],
    ['To + Pending In', true, 'None + Pending In'],
    ['From', false, null],
    ['From + Pending Out', true, 'From'],
    ['Both', true, 'From'],
  ],
};

const TYPES: SubType[] = ['subscribe', 'unsubscribe', 'subscribed', 'unsubscribed'];

describe('state names', () => {
  test('every one of the nine states of Appendix A.1 names itself', () => {
    for (const n of ALL) assert.equal(stateName(stateOf(n)), n);
  });

  test('NONE is the state "None"', () => {
    assert.equal(stateName(NONE), 'None');
    assert.deepEqual({ ...NONE }, { subscription: 'none', ask: null, pendingIn: false });
  });

  test('the pending flags map to ask and pendingIn', () => {
    assert.deepEqual(stateOf('None + Pending Out/In'), { subscription: 'none', ask: 'subscribe', pendingIn: true });
    assert.deepEqual(stateOf('To + Pending In'), { subscription: 'to', ask: null, pendingIn: true });
    assert.deepEqual(stateOf('From + Pending Out'), { subscription: 'from', ask: 'subscribe', pendingIn: false });
  });

  test('flags that cannot go with a subscription are ignored', () => {
    assert.equal(stateName({ subscription: 'both', ask: 'subscribe', pendingIn: true }), 'Both');
    assert.equal(stateName({ subscription: 'to', ask: 'subscribe', pendingIn: false }), 'To');
    assert.equal(stateName({ subscription: 'from', ask: null, pendingIn: true }), 'From');
  });

  test('stateOf returns a fresh object each time', () => {
    const a = stateOf('None');
    a.pendingIn = true;
    assert.equal(stateOf('None').pendingIn, false);
    assert.equal(NONE.pendingIn, false);
  });
});

for (const type of TYPES) {
  describe(`outbound "${type}" (RFC 6121 Appendix A.2)`, () => {
    test('the table has a row for every state', () => {
      assert.deepEqual(OUT[type].map((r) => r[0]), ALL);
    });
    for (const [from, route, to] of OUT[type]) {
      const what = to === null ? 'keeps its state' : `becomes "${to}"`;
      test(`from "${from}" the item ${what} and the stanza is ${route ? '' : 'not '}routed`, () => {
        const r = outbound(stateOf(from), type);
        assert.equal(stateName(r.state), to ?? from);
        assert.equal(r.changed, to !== null);
        assert.equal(r.route, route);
      });
    }
  });

  describe(`inbound "${type}" (RFC 6121 Appendix A.3)`, () => {
    test('the table has a row for every state', () => {
      assert.deepEqual(IN[type].map((r) => r[0]), ALL);
    });
    for (const [from, deliver, to] of IN[type]) {
      const what = to === null ? 'keeps its state' : `becomes "${to}"`;
      test(`from "${from}" the item ${what} and the stanza is ${deliver ? '' : 'not '}delivered`, () => {
        const r = inbound(stateOf(from), type);
        assert.equal(stateName(r.state), to ?? from);
        assert.equal(r.changed, to !== null);
        assert.equal(r.deliver, deliver);
      });
    }
  });
}

describe('automatic replies (RFC 6121 §3.1.3)', () => {
  for (const from of ['From', 'From + Pending Out', 'Both'] as const) {
    test(`a subscription request from a contact already in state "${from}" is answered with subscribed`, () => {
      assert.equal(inbound(stateOf(from), 'subscribe').autoReply, 'subscribed');
    });
  }

  test('no other inbound stanza in any state gets an automatic reply', () => {
    for (const type of TYPES) {
      for (const from of ALL) {
        if (type === 'subscribe' && (from === 'From' || from === 'From + Pending Out' || from === 'Both')) continue;
        assert.equal(inbound(stateOf(from), type).autoReply, undefined, `${type} from ${from}`);
      }
    }
  });
});

describe('purity', () => {
  test('the input state is never modified', () => {
    for (const type of TYPES) {
      for (const from of ALL) {
        const s = stateOf(from);
        const copy = { ...s };
        outbound(s, type);
        inbound(s, type);
        assert.deepEqual(s, copy);
      }
    }
  });

  test('a full subscription handshake ends in "Both" on both sides', () => {
    // Alice subscribes to Bob; Bob approves and subscribes back; Alice approves.
    let alice = outbound(NONE, 'subscribe').state; // Alice's item for Bob
    let bob = inbound(NONE, 'subscribe').state; // Bob's item for Alice
    bob = outbound(bob, 'subscribed').state;
    alice = inbound(alice, 'subscribed').state;
    assert.equal(stateName(alice), 'To');
    assert.equal(stateName(bob), 'From');
    bob = outbound(bob, 'subscribe').state;
    alice = inbound(alice, 'subscribe').state;
    alice = outbound(alice, 'subscribed').state;
    bob = inbound(bob, 'subscribed').state;
    assert.equal(stateName(alice), 'Both');
    assert.equal(stateName(bob), 'Both');
  });
});
