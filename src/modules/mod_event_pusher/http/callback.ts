// The contract of an HTTP backend callback module. Each function takes one
// object carrying exactly the arguments of MongooseIM's
// should_make_req/6, prepare_headers/7 and prepare_body/7, under the same
// names in camelCase, so a module ported from Erlang maps line by line.
import type { Acc, Direction } from '../../../hooks/catalogue.ts';
import type { Element } from '../../../xmpp/xml.ts';
import type { JID } from '../../../xmpp/jid.ts';

/** One handler's options, as MongooseIM passes `Opts` to the callbacks. */
export interface HttpHandlerOpts {
  readonly pool_name: string;
  /** The handler's path as configured (joined to the pool's path_prefix when sending). */
  readonly path: string;
  readonly callback_module: string;
}

/** should_make_req(Acc, Dir, Packet, From, To, Opts) */
export interface ShouldMakeReqArgs {
  acc: Acc;
  dir: Direction;
  /** The whole <message/> stanza. */
  packet: Element;
  from: JID;
  to: JID;
  opts: HttpHandlerOpts;
}

/** prepare_headers/prepare_body(Acc, Dir, Host, Message, Sender, Receiver, Opts), and the recipient's domain */
export interface PrepareArgs {
  acc: Acc;
  dir: Direction;
  /** The sender's domain, prepared (From#jid.lserver), in both directions. */
  host: string;
  /** Text of the message's first <body/>, '' when it has none. */
  message: string;
  /** The sender's localpart, prepared (From#jid.luser). */
  sender: string;
  /** The recipient's localpart, prepared (To#jid.luser). */
  receiver: string;
  /** Petrel's addition: the recipient's domain, prepared (To#jid.lserver); MongooseIM's callbacks do not get it. */
  receiverHost: string;
  opts: HttpHandlerOpts;
}

export type HttpHeaderList = Array<[string, string]>;

/**
 * A callback module: an ES module exporting these three functions. Any of
 * them may return a Promise; the event then continues asynchronously and the
 * stanza is never held up waiting for it.
 */
export interface CallbackModule {
  shouldMakeReq(a: ShouldMakeReqArgs): boolean | Promise<boolean>;
  prepareHeaders(a: PrepareArgs): HttpHeaderList | Record<string, string> | Promise<HttpHeaderList | Record<string, string>>;
  prepareBody(a: PrepareArgs): string | Uint8Array | Promise<string | Uint8Array>;
}

export const CALLBACK_FUNCTIONS = ['shouldMakeReq', 'prepareHeaders', 'prepareBody'] as const;
