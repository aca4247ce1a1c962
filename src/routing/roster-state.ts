// The presence subscription state machine of RFC 6121 §3 and Appendix A, as
// pure functions. A contact's state, seen from the user's roster, is the
// subscription (none / to / from / both) plus two pending flags: the user asked
// to subscribe and the contact has not answered ("Pending Out", kept as
// ask="subscribe"), and the contact asked and the user has not answered
// ("Pending In"). Appendix A.1 lists the nine combinations that can exist.
import type { Ask } from './types.ts';

export interface SubState {
  subscription: 'none' | 'to' | 'from' | 'both';
  ask: Ask;
  pendingIn: boolean;
}

export type SubType = 'subscribe' | 'subscribed' | 'unsubscribe' | 'unsubscribed';

/** The nine states of RFC 6121 Appendix A.1, spelled as there. */
export type StateName =
  | 'None'
  | 'None + Pending Out'
  | 'None + Pending In'
  | 'None + Pending Out/In'
  | 'To'
  | 'To + Pending In'
  | 'From'
  | 'From + Pending Out'
  | 'Both';

export const NONE: SubState = Object.freeze({ subscription: 'none', ask: null, pendingIn: false });

const STATES: Readonly<Record<StateName, SubState>> = {
  'None': NONE,
  'None + Pending Out': Object.freeze({ subscription: 'none', ask: 'subscribe', pendingIn: false }),
  'None + Pending In': Object.freeze({ subscription: 'none', ask: null, pendingIn: true }),
  'None + Pending Out/In': Object.freeze({ subscription: 'none', ask: 'subscribe', pendingIn: true }),
  'To': Object.freeze({ subscription: 'to', ask: null, pendingIn: false }),
  'To + Pending In': Object.freeze({ subscription: 'to', ask: null, pendingIn: true }),
  'From': Object.freeze({ subscription: 'from', ask: null, pendingIn: false }),
  'From + Pending Out': Object.freeze({ subscription: 'from', ask: 'subscribe', pendingIn: false }),
  'Both': Object.freeze({ subscription: 'both', ask: null, pendingIn: false }),
};

/**
 * Names a state. Flags that cannot exist beside a subscription are ignored:
 * Pending Out once the user already receives the contact's presence (to,
 * both), Pending In once the contact already receives the user's (from, both).
 */
export function stateName(s: SubState): StateName {
  switch (s.subscription) {
    case 'none':
      if (s.ask === 'subscribe') return s.pendingIn ? 'None + Pending Out/In' : 'None + Pending Out';
      return s.pendingIn ? 'None + Pending In' : 'None';
    case 'to':
      return s.pendingIn ? 'To + Pending In' : 'To';
    case 'from':
      return s.ask === 'subscribe' ? 'From + Pending Out' : 'From';
    case 'both':
      return 'Both';
  }
}

/** The state object of a name (a fresh copy, safe to store or change). */
export function stateOf(name: StateName): SubState {
  return { ...STATES[name] };
}

type Table = Readonly<Record<StateName, StateName>>;

// Appendix A.2: stanzas the user sends about the contact.
const OUTBOUND: Readonly<Record<SubType, Table>> = {
  // A.2.1
  subscribe: {
    'None': 'None + Pending Out',
    'None + Pending Out': 'None + Pending Out',
    'None + Pending In': 'None + Pending Out/In',
    'None + Pending Out/In': 'None + Pending Out/In',
    'To': 'To',
    'To + Pending In': 'To + Pending In',
    'From': 'From + Pending Out',
    'From + Pending Out': 'From + Pending Out',
    'Both': 'Both',
  },
  // A.2.2
  unsubscribe: {
    'None': 'None',
    'None + Pending Out': 'None',
    'None + Pending In': 'None + Pending In',
    'None + Pending Out/In': 'None + Pending In',
    'To': 'None',
    'To + Pending In': 'None + Pending In',
    'From': 'From',
    'From + Pending Out': 'From',
    'Both': 'From',
  },
  // A.2.3 (pre-approval of §3.4 is not offered, so "None", "None + Pending
  // Out" and "To" keep their state)
  subscribed: {
    'None': 'None',
    'None + Pending Out': 'None + Pending Out',
    'None + Pending In': 'From',
    'None + Pending Out/In': 'From + Pending Out',
    'To': 'To',
    'To + Pending In': 'Both',
    'From': 'From',
    'From + Pending Out': 'From + Pending Out',
    'Both': 'Both',
  },
  // A.2.4
  unsubscribed: {
    'None': 'None',
    'None + Pending Out': 'None + Pending Out',
    'None + Pending In': 'None',
    'None + Pending Out/In': 'None + Pending Out',
    'To': 'To',
    'To + Pending In': 'To',
    'From': 'None',
    'From + Pending Out': 'None + Pending Out',
    'Both': 'To',
  },
};

// Appendix A.3: stanzas the contact sends to the user.
const INBOUND: Readonly<Record<SubType, Table>> = {
  // A.3.1
  subscribe: {
    'None': 'None + Pending In',
    'None + Pending Out': 'None + Pending Out/In',
    'None + Pending In': 'None + Pending In',
    'None + Pending Out/In': 'None + Pending Out/In',
    'To': 'To + Pending In',
    'To + Pending In': 'To + Pending In',
    'From': 'From',
    'From + Pending Out': 'From + Pending Out',
    'Both': 'Both',
  },
  // A.3.2
  unsubscribe: {
    'None': 'None',
    'None + Pending Out': 'None + Pending Out',
    'None + Pending In': 'None',
    'None + Pending Out/In': 'None + Pending Out',
    'To': 'To',
    'To + Pending In': 'To',
    'From': 'None',
    'From + Pending Out': 'None + Pending Out',
    'Both': 'To',
  },
  // A.3.3
  subscribed: {
    'None': 'None',
    'None + Pending Out': 'To',
    'None + Pending In': 'None + Pending In',
    'None + Pending Out/In': 'To + Pending In',
    'To': 'To',
    'To + Pending In': 'To + Pending In',
    'From': 'From',
    'From + Pending Out': 'Both',
    'Both': 'Both',
  },
  // A.3.4
  unsubscribed: {
    'None': 'None',
    'None + Pending Out': 'None',
    'None + Pending In': 'None + Pending In',
    'None + Pending Out/In': 'None + Pending In',
    'To': 'None',
    'To + Pending In': 'None + Pending In',
    'From': 'From',
    'From + Pending Out': 'From',
    'Both': 'From',
  },
};

export interface OutboundResult {
  state: SubState;
  /** The roster item changed: store it and push it to interested resources (§2.1.6). */
  changed: boolean;
  /** Send the stanza on to the contact. */
  route: boolean;
}

export interface InboundResult {
  state: SubState;
  /** The roster item changed: store it and push it to interested resources. */
  changed: boolean;
  /** Hand the stanza to the user (or keep it for them, for a subscription request). */
  deliver: boolean;
  /** A reply the user's server sends on the user's behalf to the contact. */
  autoReply?: 'subscribed' | 'unsubscribed';
}

/** The user sent a presence stanza of `type` to the contact (RFC 6121 Appendix A.2). */
export function outbound(state: SubState, type: SubType): OutboundResult {
  const from = stateName(state);
  const to = OUTBOUND[type][from];
  const changed = to !== from;
  // §3.1.2 and §3.3.2: "subscribe" and "unsubscribe" are routed whatever the
  // state, so that a user can bring the contact's server back in step when
  // the two have drifted apart. "subscribed" and "unsubscribed" go out only
  // when they change something (§3.1.5, §3.2.2).
  const route = type === 'subscribe' || type === 'unsubscribe' ? true : changed;
  return { state: stateOf(to), changed, route };
}

/** The contact sent a presence stanza of `type` to the user (RFC 6121 Appendix A.3). */
export function inbound(state: SubState, type: SubType): InboundResult {
  const from = stateName(state);
  const to = INBOUND[type][from];
  const changed = to !== from;
  if (type === 'subscribe' && (from === 'From' || from === 'From + Pending Out' || from === 'Both')) {
    // §3.1.3: the contact already receives the user's presence, so the
    // server answers for the user instead of asking them again.
    return { state: stateOf(to), changed: false, deliver: false, autoReply: 'subscribed' };
  }
  // Every row of A.3 that changes the state delivers the stanza, and every
  // row that leaves it alone does not.
  return { state: stateOf(to), changed, deliver: changed };
}
