// Stream errors (RFC 6120 §4.9) and stanza errors (RFC 6120 §8.3).
//
//   new StreamError(condition, text?)
//   new StanzaError(condition, type?, text?)   // type omitted: the usual type for the condition
//
// The condition is the stable code of the error: it is what reaches the peer.

import { Element, escapeText } from './xml.ts';
import { NS_STANZAS, NS_STREAM, NS_STREAMS_ERR } from './ns.ts';

/** RFC 6120 §4.9.3 */
export type StreamErrorCondition =
  | 'bad-format' | 'bad-namespace-prefix' | 'conflict' | 'connection-timeout' | 'host-gone' | 'host-unknown'
  | 'improper-addressing' | 'internal-server-error' | 'invalid-from' | 'invalid-namespace' | 'invalid-xml'
  | 'not-authorized' | 'not-well-formed' | 'policy-violation' | 'remote-connection-failed' | 'reset'
  | 'resource-constraint' | 'restricted-xml' | 'see-other-host' | 'system-shutdown' | 'undefined-condition'
  | 'unsupported-encoding' | 'unsupported-feature' | 'unsupported-stanza-type' | 'unsupported-version';

/** RFC 6120 §8.3.3 */
export type StanzaErrorCondition =
  | 'bad-request' | 'conflict' | 'feature-not-implemented' | 'forbidden' | 'gone' | 'internal-server-error'
  | 'item-not-found' | 'jid-malformed' | 'not-acceptable' | 'not-allowed' | 'not-authorized' | 'policy-violation'
  | 'recipient-unavailable' | 'redirect' | 'registration-required' | 'remote-server-not-found'
  | 'remote-server-timeout' | 'resource-constraint' | 'service-unavailable' | 'subscription-required'
  | 'undefined-condition' | 'unexpected-request';

/**
 * Constructors take any string so that a condition read from the wire or from
 * configuration passes through; the named ones are what RFC 6120 defines.
 */
type AnyStreamCondition = StreamErrorCondition | (string & {});
type AnyStanzaCondition = StanzaErrorCondition | (string & {});

/** RFC 6120 §8.3.2 */
export type StanzaErrorType = 'auth' | 'cancel' | 'continue' | 'modify' | 'wait';

/** A stream-level error: the stream is closed after it is sent. */
export class StreamError extends Error {
  readonly code = 'stream_error';
  readonly condition: AnyStreamCondition;
  readonly text?: string;

  constructor(condition: AnyStreamCondition, text?: string) {
    super(text === undefined ? condition : `${condition}: ${text}`);
    this.name = 'StreamError';
    this.condition = condition;
    if (text !== undefined) this.text = text;
  }

  /** The <stream:error/> element (RFC 6120 §4.9.2), with the stream prefix as it appears inside the stream. */
  toXml(): string {
    let s = `<stream:error><${this.condition} xmlns="${NS_STREAMS_ERR}"/>`;
    if (this.text !== undefined) s += `<text xmlns="${NS_STREAMS_ERR}" xml:lang="en">${escapeText(this.text)}</text>`;
    return s + '</stream:error>';
  }
}

/**
 * The type each condition is given when the caller does not choose one,
 * following the "SHOULD" of each condition's subsection of RFC 6120 §8.3.3.
 */
const DEFAULT_TYPE: Record<StanzaErrorCondition, StanzaErrorType> = {
  'bad-request': 'modify',
  'conflict': 'cancel',
  'feature-not-implemented': 'cancel',
  'forbidden': 'auth',
  'gone': 'cancel',
  'internal-server-error': 'cancel',
  'item-not-found': 'cancel',
  'jid-malformed': 'modify',
  'not-acceptable': 'modify',
  'not-allowed': 'cancel',
  'not-authorized': 'auth',
  'policy-violation': 'modify',
  'recipient-unavailable': 'wait',
  'redirect': 'modify',
  'registration-required': 'auth',
  'remote-server-not-found': 'cancel',
  'remote-server-timeout': 'wait',
  'resource-constraint': 'wait',
  'service-unavailable': 'cancel',
  'subscription-required': 'auth',
  'undefined-condition': 'cancel',
  'unexpected-request': 'wait',
};

/** An error answered to one stanza; the stream stays up. */
export class StanzaError extends Error {
  readonly code = 'stanza_error';
  readonly condition: AnyStanzaCondition;
  readonly type: StanzaErrorType;
  readonly text?: string;

  constructor(condition: AnyStanzaCondition, type?: StanzaErrorType, text?: string) {
    super(text === undefined ? condition : `${condition}: ${text}`);
    this.name = 'StanzaError';
    this.condition = condition;
    this.type = type ?? DEFAULT_TYPE[condition as StanzaErrorCondition] ?? 'cancel';
    if (text !== undefined) this.text = text;
  }

  /** <error type="..."><condition xmlns="...stanzas"/>[<text/>]</error> (RFC 6120 §8.3.2). */
  toElement(): Element {
    const el = new Element('error', { type: this.type });
    el.c(this.condition, { xmlns: NS_STANZAS });
    if (this.text !== undefined) el.c('text', { xmlns: NS_STANZAS, 'xml:lang': 'en' }).t(this.text);
    return el;
  }
}

/**
 * The error reply to a stanza (RFC 6120 §8.3.1): same element name and id,
 * 'from' and 'to' swapped, type "error", the original payload kept (§8.3.1
 * allows including it, and clients use it to match the reply), and the error
 * child appended. The input is not modified. Never answer a stanza that is
 * itself of type "error" (§8.3.1, to avoid loops): the caller checks that.
 */
export function errorReply(stanza: Element, err: StanzaError): Element {
  const attrs: Record<string, string | undefined> = { ...stanza.attrs };
  attrs.from = stanza.attrs.to;
  attrs.to = stanza.attrs.from;
  attrs.type = 'error';
  const reply = new Element(stanza.name, attrs);
  for (const c of stanza.children) reply.children.push(typeof c === 'string' ? c : c.clone());
  reply.append(err.toElement());
  return reply;
}

/** What a peer's own `<stream:error/>` said (RFC 6120 §4.9.2). */
export interface ReceivedStreamError {
  /** The defined condition, or "undefined-condition" when there is none (§4.9.3.21). */
  condition: string;
  /** The <text/>, cut to 256 characters, if any. */
  text?: string;
}

/**
 * The namespace of a first-level element of a stream: a prefixed name is
 * looked up on the element itself, the `stream` prefix falls back to the
 * stream namespace the stream header had to declare (RFC 6120 §4.8.5); an
 * unprefixed one has its own `xmlns`. Prefixes are not fixed (§4.8.5), so an
 * element is recognised by namespace and local name, never by its spelling.
 */
function streamLevelNamespace(el: Element): string | undefined {
  const colon = el.name.indexOf(':');
  if (colon < 0) return el.attrs.xmlns;
  const prefix = el.name.slice(0, colon);
  return el.attrs['xmlns:' + prefix] ?? (prefix === 'stream' ? NS_STREAM : undefined);
}

/** A first-level element that is a stream error in the stream namespace, read; null for anything else. */
export function receivedStreamError(el: Element): ReceivedStreamError | null {
  const colon = el.name.indexOf(':');
  if (el.name.slice(colon + 1) !== 'error' || streamLevelNamespace(el) !== NS_STREAM) return null;
  let condition = 'undefined-condition';
  let text: string | undefined;
  for (const child of el.getChildren()) {
    if (child.attrs.xmlns !== NS_STREAMS_ERR) continue;
    if (child.name === 'text') text = child.text().slice(0, 256);
    else if (condition === 'undefined-condition' && /^[a-z-]{1,40}$/.test(child.name)) condition = child.name;
  }
  return text === undefined ? { condition } : { condition, text };
}
