// The one typed catalogue of every hook Petrel runs. Each entry names the
// parameters a handler receives and the accumulator it folds over
// (MongooseIM's mongoose_hooks.erl keeps the same kind of list).
import type { Element } from '../xmpp/xml.ts';
import type { JID } from '../xmpp/jid.ts';

/**
 * The accumulator that travels with one stanza through the hooks, like
 * MongooseIM's mongoose_acc: where it comes from, when, and room for
 * handlers to leave results for later ones.
 */
export interface Acc {
  /** Unique reference of this stanza's trip through the server. */
  ref: string;
  /** Milliseconds since the epoch when the server received the stanza. */
  timestamp: number;
  /** The host (virtual host / host type) the stanza belongs to. */
  hostType: string;
  lserver: string;
  element: Element;
  from: JID;
  to: JID;
}

/**
 * What a stanza must wait for before it is routed: the commit of something
 * durable a handler started (the event pusher's outbox write), or undefined.
 * The sender's session routes the stanza, and every later one, once it
 * settles. Handlers that add one combine it with the one they were given.
 */
export type Barrier = Promise<unknown> | undefined;

export type Direction = 'in' | 'out';

/** A chat event: a message sent by a user (dir "in") or about to reach one (dir "out"). */
export interface ChatEvent {
  kind: 'chat';
  direction: Direction;
  from: JID;
  to: JID;
  /** chat | groupchat | headline | normal */
  type: string;
  packet: Element;
  /**
   * Set by a backend that refused to keep the event because its sender's
   * share of the queue is used up; the translator then bounces a message the
   * user is sending (resource-constraint) instead of routing it.
   */
  refused?: 'user_full';
}

export interface PresenceEvent {
  kind: 'presence';
  jid: JID;
  status: 'online' | 'offline';
}

export type PushEvent = ChatEvent | PresenceEvent;

export interface HookCatalogue {
  /** A message a connected user sent, after `from` is stamped and before routing. Stop = drop it. */
  user_send_message: { acc: Acc; from: JID; to: JID; packet: Element };
  /** Any stanza a connected user sent (message, presence, iq), before its own hook and routing. */
  user_send_packet: { acc: Acc; from: JID; to: JID; packet: Element };
  /** A stanza about to be delivered to a local user (to a session or to offline storage). Stop = drop it. */
  filter_local_packet: { acc: Acc; from: JID; to: JID; packet: Element };
  /** The user's first available presence of a session. */
  user_available: { jid: JID };
  /** A session's presence became unavailable (explicitly or by disconnect). */
  unset_presence: { jid: JID; status: string };
  user_registered: { user: string; server: string };
  /**
   * An account was removed (MongooseIM's remove_user): each module deletes
   * its own data about the user, pushing the promise of it onto `removals`,
   * which whoever ran the hook awaits.
   */
  user_removed: { user: string; server: string; removals: Promise<unknown>[] };
  /** An event for the event pusher's backends (one handler per backend). */
  push_event: { acc: Acc; event: PushEvent };
  /** A message to a user with no available session; a handler that stores it stops the hook. */
  offline_message: { acc: Acc; from: JID; to: JID; packet: Element };
  /** A session opened (bound a resource) / closed. */
  sm_register_connection: { jid: JID };
  sm_remove_connection: { jid: JID; reason: string };
}

export type HookName = keyof HookCatalogue;

/**
 * The accumulator each hook folds (its handlers' result); hooks not listed
 * fold nothing (undefined) and only tell whether a handler stopped them.
 */
export interface HookAccs {
  user_send_message: Barrier;
  push_event: Barrier;
}

export type HookAcc<N extends HookName> = N extends keyof HookAccs ? HookAccs[N] : undefined;
