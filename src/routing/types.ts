// What the routing layer offers the rest of the server: routing stanzas,
// the table of sessions, and IQ handlers (which modules supply).
import type { Acc } from '../hooks/catalogue.ts';
import type { Element } from '../xmpp/xml.ts';
import type { JID } from '../xmpp/jid.ts';

export interface RouterApi {
  /** Routes a stanza from `from` to `to`; `packet` already carries both as attributes. */
  route(from: JID, to: JID, packet: Element, acc?: Acc): void;
  /** Bounces `packet` back to its sender with a stanza error (RFC 6120 §8.3), unless it is itself an error. */
  routeError(packet: Element, from: JID, to: JID, condition: string, type?: string, text?: string): void;
  /** Makes a fresh accumulator for a stanza. */
  newAcc(from: JID, to: JID, packet: Element): Acc;
  /**
   * Serves `domain` (a subdomain such as "conference.localhost"): every
   * stanza to it or to a JID at it goes to `handler`, which answers by
   * routing. A domain may be served once.
   */
  addService(domain: string, handler: ServiceHandler): void;
}

/** A service on a domain of its own (group chat, ...): gets every stanza for that domain. */
export type ServiceHandler = (from: JID, to: JID, packet: Element, acc: Acc) => void;

/** A session as other parts of the server see it. */
export interface SessionView {
  jid: JID;
  /**
   * The node of a session of another node of the cluster (a RemoteSession
   * proxy; undefined for this node's own): `send` asks that node to
   * deliver, which runs its hooks.
   */
  readonly clusterNode?: string;
  priority: number;
  /** Has sent initial presence and not gone unavailable. */
  available: boolean;
  /** Asked for the roster (RFC 6121 §2.1.6 "interested resource"). */
  interested: boolean;
  /**
   * XEP-0280: the resource enabled message carbons (kept across a
   * XEP-0198 resumption; replicated with the session in a cluster).
   */
  carbons?: boolean;
  /** The last available presence it sent, stamped with its full JID. */
  presence: Element | null;
  /**
   * Ends a session whose connection is found dead, without a stream error;
   * its messages not yet handed to the connection, and any sent to the user
   * afterwards, are routed again (another resource, else offline storage).
   */
  disconnect(reason: string): void;
  /**
   * Writes a stanza to the client. `held`: a stanza the server kept for the
   * user (an offline message), written whatever others' share of the output
   * (the caller paces it with `drained`). `ref`: the routing's reference
   * (Acc.ref), which another node's session takes along so that its node's
   * hooks see one routed stanza as one, whatever the number of resources.
   */
  send(el: Element, held?: boolean, ref?: string): void;
  /** Resolves true once everything sent so far has been taken by the connection, false if the session ends first. */
  drained?(): Promise<boolean>;
  /**
   * Stops (true) or resumes (false) reading the client's input, for flow
   * control (the event pusher's outbox past its high-water mark); the
   * client is then slowed by TCP's or the WebSocket's own flow control.
   * Idempotent; absent where there is no connection to pause.
   */
  throttle?(on: boolean): void;
}

export interface SessionsApi {
  /** Every session of a bare JID ("user@domain"). */
  byBare(bare: string): SessionView[];
  byFull(full: string): SessionView | undefined;
  count(): number;
  /** A session's replicated state (presence, priority, roster interest, carbons) changed: the cluster tells the other nodes. */
  changed?(s: SessionView): void;
  /**
   * Settles once the cross-node deliveries of stanzas from `full` started so
   * far are acknowledged (or routed again); undefined when none waits.
   * XEP-0198: the handled count waits for it.
   */
  settled?(full: string): Promise<void> | undefined;
  /**
   * A cluster: the receipt of another node's delivery of `el` while it is
   * handed to a local session, or undefined. Stream management takes it
   * when it buffers the stanza and calls it once the stanza is safe: the
   * client acknowledged it, or it was routed again when the session ended.
   */
  takeReceipt?(el: Element): (() => void) | undefined;
  /** Hands a receipt on with `el` while it is routed again (SessionManager.expectReceipt). */
  expectReceipt?(el: Element, handled: () => void): void;
  /** True, and the receipt forgotten, when nobody took it (SessionManager.dropReceipt). */
  dropReceipt?(el: Element): boolean;
}

export interface IqRequest {
  from: JID;
  to: JID;
  type: 'get' | 'set';
  iq: Element;
  /** The single payload child. */
  payload: Element;
  /** The sender's session when the IQ came from a local client. */
  session?: SessionView;
}

/** Returns the payload of the result (or undefined for an empty result); throws StanzaError to answer with an error. */
export type IqHandler = (req: IqRequest) => Element | undefined | Promise<Element | undefined>;

export interface IqHandlerSpec {
  xmlns: string;
  /**
   * "server": IQs addressed to a served domain (or with no `to`, for server features).
   * "user": IQs addressed to a bare user JID or with no `to` (handled on the user's behalf, e.g. roster).
   */
  scope: 'server' | 'user';
  handler: IqHandler;
}

export type Subscription = 'none' | 'to' | 'from' | 'both' | 'remove';
/** RFC 6121 pending states kept beside the subscription. */
export type Ask = 'subscribe' | null;

export interface RosterItem {
  /** Bare JID of the contact. */
  jid: string;
  name: string | null;
  subscription: Exclude<Subscription, 'remove'>;
  ask: Ask;
  /** The contact asked to subscribe to us and we have not answered (RFC 6121 §3.1.3 "pending in"). */
  pendingIn: boolean;
  groups: string[];
}

/**
 * The roster as presence handling reads and changes it (RFC 6121 §3, §4).
 * Routing depends on this alone: mod_roster implements it over its store and
 * server.ts hands it to Presence; without mod_roster the server uses
 * NO_ROSTER (src/routing/presence.ts).
 */
export interface Roster {
  /** The user's roster, in the order of the contacts' JIDs; at most `limit` items when given. */
  getRoster(user: string, domain: string, limit?: number): Promise<RosterItem[]>;
  getItem(user: string, domain: string, contact: string): Promise<RosterItem | null>;
  setItem(user: string, domain: string, item: RosterItem): Promise<void>;
}
