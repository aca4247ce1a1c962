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
  /**
   * Set on a node that delivers, to one of its sessions, a stanza another
   * node of the cluster routed (that node's name): what is done once per
   * routed stanza (carbon copies) is that node's.
   */
  routedBy?: string;
  /**
   * Set by whoever routes a stanza and must know when it is safe (stream
   * management routing again what a session that ended held, in a
   * cluster): the offline path hands it what the stanza's storage waits
   * for (the router its checks, mod_offline its write).
   */
  hold?: (p: Promise<unknown>) => void;
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

/**
 * A client-to-server stream as the c2s hooks show it to modules (stream
 * management, client state indication): enough to answer the client, hold
 * or count what it is sent, and carry a session over to a new connection,
 * without seeing the connection (TCP, WebSocket) underneath.
 */
export interface C2SStream {
  /** Unique per connection, for logs. */
  readonly id: number;
  /** "bind" after authentication, "bound" once a resource is bound (or a session resumed), "closed" at the end. */
  readonly state: string;
  /** The served domain of the stream. */
  readonly domain: string;
  /** The authenticated user name, from authentication on. */
  readonly user: string;
  /** The bound full JID (state "bound" only). */
  readonly jid: JID;
  /** False while a bound session is kept without a connection (XEP-0198 resumption), and once closed. */
  readonly connected: boolean;
  /**
   * From now on the caller (stream management) routes again whatever this
   * session was sent and the client did not confirm, whenever the session
   * ends: the session no longer does so itself for a client dropped because
   * it did not read (which would deliver those messages twice).
   */
  manageDelivery(): void;
  /** Writes an element that is not a stanza (a "nonza": <r/>, <enabled/>, ...): no hook, never counted. */
  writeNonza(el: Element): void;
  /**
   * Resolves once every stanza received so far has been handed to the
   * router (some wait for their user_send_message barrier, the outbox
   * commit); undefined when none waits.
   */
  routed?(): Promise<void> | undefined;
  /** Sends a stanza to the client the way the router does, through xmpp_presend_element. */
  send(el: Element): void;
  /** Ends the stream with a stream error (RFC 6120 §4.9). */
  kick(condition: string, text?: string): void;
  /** Ends the session now: a kept one without a connection, or a connected one with a stream close. */
  terminate(reason: string): void;
  /**
   * XEP-0198 §5: this authenticated, unbound stream takes over `old`'s bound
   * session (its JID, presence and place in the session table, without
   * presence being broadcast again); `old`'s connection, if still open, is
   * closed with a `conflict` stream error. False when either is not in a
   * state that allows it.
   */
  takeOver(old: C2SStream): boolean;
  /**
   * Settles once every stanza received so far has been routed (some wait
   * for a hook's barrier, or behind a presence broadcast); undefined when
   * none waits. Never settles if the session ends first.
   */
  routed?(): Promise<void> | undefined;
}

export interface HookCatalogue {
  /** A message a connected user sent, after `from` is stamped and before routing. Stop = drop it. */
  user_send_message: { acc: Acc; from: JID; to: JID; packet: Element };
  /** Any stanza a connected user sent (message, presence, iq), before its own hook and routing. */
  user_send_packet: { acc: Acc; from: JID; to: JID; packet: Element };
  /** A stanza about to be delivered to a local user (to a session or to offline storage). Stop = drop it. */
  filter_local_packet: { acc: Acc; from: JID; to: JID; packet: Element };
  /**
   * A stanza handed to another node of the cluster for one of its sessions
   * (`to`), which runs filter_local_packet there; run on the node that
   * routed it, for what is done once per routed stanza (carbon copies).
   */
  remote_delivery: { acc: Acc; from: JID; to: JID; packet: Element };
  /** The user's first available presence of a session. */
  user_available: { jid: JID };
  /**
   * A cluster: a session of another node became available (that node ran
   * user_available); run on each node that learns it.
   */
  remote_user_available: { jid: JID };
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
  /**
   * Stream features offered after authentication (RFC 6120 §4.3.2): each
   * handler appends its features' XML to the accumulator.
   */
  c2s_stream_features: { stream: C2SStream };
  /**
   * Every first-level element an authenticated client sends (stanzas and
   * nonzas alike), before the session handles it. Stop = it was handled
   * here (a nonza of the handler's protocol).
   */
  user_send_xmlel: { stream: C2SStream; el: Element };
  /**
   * Every stanza about to be written to a client (MongooseIM's
   * xmpp_presend_element). Stop = not now: the handler keeps it and sends
   * it later itself (client state indication holds presence).
   */
  xmpp_presend_element: { stream: C2SStream; el: Element };
  /**
   * A bound session lost its connection without closing its stream. Stop =
   * a handler keeps the session without a connection (XEP-0198
   * resumption); it then ends it with terminate().
   */
  user_socket_closed: { stream: C2SStream; reason: string };
  /** A bound session ended, for whatever reason, after it left the session table. */
  c2s_terminate: { stream: C2SStream; reason: string };
  /** A resumed session (XEP-0198): `to` took over `from`; per-session state moves along. */
  c2s_copy_session: { from: C2SStream; to: C2SStream };
}

export type HookName = keyof HookCatalogue;

/**
 * The accumulator each hook folds (its handlers' result); hooks not listed
 * fold nothing (undefined) and only tell whether a handler stopped them.
 */
export interface HookAccs {
  user_send_message: Barrier;
  push_event: Barrier;
  /** The features' XML, appended to by each handler. */
  c2s_stream_features: string;
}

export type HookAcc<N extends HookName> = N extends keyof HookAccs ? HookAccs[N] : undefined;
