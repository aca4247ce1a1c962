// The framing of XMPP over WebSocket (RFC 7395 §3.3): every WebSocket text
// message holds one complete XML element, which declares the namespaces it
// uses. `<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>` opens the
// stream (and opens it again after SASL success, §3.5), `<close/>` in the
// same namespace ends it (§3.6), everything else is a stanza or another
// first-level element of the stream.
//
// The messages of one session are read by one streaming parser
// (xmpp/stream-parser.ts) under a root of its own that declares nothing, so
// the XML restrictions of RFC 6120 §11.1 and every size, depth and element
// limit of the byte stream apply unchanged, and a prefix an element does not
// declare itself is refused. Between messages the parser rests, holding no
// XML parser, exactly as an idle TCP stream does.
import { escapeAttr, serialize, type Element } from '../xmpp/xml.ts';
import { StreamError, type StreamErrorCondition } from '../xmpp/errors.ts';
import { StreamParser, type StreamHeader, type StreamParserEvents } from '../xmpp/stream-parser.ts';
import { NS_CLIENT, NS_STREAM } from '../xmpp/ns.ts';
import type { Framing, FramingEvents, FramingLimits } from './framing.ts';

/** RFC 7395 §3.3.2: the namespace of <open/> and <close/>. */
export const NS_FRAMING = 'urn:ietf:params:xml:ns:xmpp-framing';

/** The parser's root: never sent by anyone, primes the parser as a stream header would. */
const ROOT = '<stream:stream>';

/** What the parser of one message may report before it has been checked. */
const NONE = 0;
const ONE = 1;
const FAILED = 2;

export class WebSocketFraming implements Framing, StreamParserEvents {
  readonly elementPerWrite = true;
  readonly divisibleInput = false;
  #events: FramingEvents;
  #limits: FramingLimits;
  #parser: StreamParser;
  #authenticated = false;
  /** The element of the message being read, held until the whole message is known good. */
  #element: Element | null = null;
  #seen = NONE;
  /** Set while a message is read: a second element in it is an error. */
  #reading = false;
  /** The next element opens the stream: at the start and after each restart. */
  #awaitingOpen = true;

  constructor(events: FramingEvents, limits: FramingLimits) {
    this.#events = events;
    this.#limits = limits;
    this.#parser = this.#newParser();
  }

  #newParser(): StreamParser {
    const p = new StreamParser(this, this.#authenticated ? this.#limits.authed : this.#limits.preAuth);
    this.#reading = true;
    p.write(Buffer.from(ROOT));
    this.#reading = false;
    return p;
  }

  input(data: Uint8Array): void {
    if (this.#seen === FAILED) return;
    this.#reading = true;
    this.#element = null;
    try {
      this.#parser.write(data);
    } finally {
      this.#reading = false;
    }
    if (this.#seen === FAILED) return;
    // RFC 7395 §3.3.3: a message is one complete element, nothing cut off after it.
    if (!this.#parser.resting) {
      return this.#fail('not-well-formed', 'a WebSocket message must hold one complete XML element (RFC 7395 §3.3.3)');
    }
    const el = this.#element;
    this.#element = null;
    this.#seen = NONE;
    // A message of whitespace only carries nothing; it counts towards the size limit like keep-alive whitespace on TCP.
    if (el !== null) this.#dispatch(el);
  }

  #dispatch(el: Element): void {
    // The first element of a stream (at the start, and after a restart) is
    // its opening, whatever it is: as on TCP, where the first element is the
    // stream header, the session's checks (headerFault) refuse anything but
    // <open/> with invalid-namespace.
    if (this.#awaitingOpen) {
      this.#awaitingOpen = false;
      return this.#events.onStreamOpen({ name: el.name, attrs: el.attrs });
    }
    if (el.attrs.xmlns === NS_FRAMING) {
      if (el.name === 'close') return this.#events.onStreamClose();
      // §3.5: a stream restart is the client's fresh <open/>, which only comes after the session asked for one.
      if (el.name === 'open') return this.#fail('policy-violation', 'the stream is open already; <open/> comes only at the start and after a stream restart');
    }
    this.#events.onStanza(el);
  }

  #fail(condition: StreamErrorCondition, text: string): void {
    if (this.#seen === FAILED) return;
    this.#seen = FAILED;
    this.#element = null;
    this.#events.onStreamError(condition, text);
  }

  restart(authenticated: boolean): void {
    // Each message is parsed on its own, so nothing of an earlier one can
    // leak into the new stream; the next message must be a fresh <open/>
    // (RFC 7395 §3.5), and the limits may change.
    this.#awaitingOpen = true;
    if (authenticated !== this.#authenticated) {
      this.#authenticated = authenticated;
      this.#parser.limits = authenticated ? this.#limits.authed : this.#limits.preAuth;
    }
  }

  headerFault(h: StreamHeader): StreamError | null {
    // RFC 7395 §3.3.2: <open/> in the framing namespace (checked by #dispatch), with no other namespace of its own.
    if (h.name !== 'open' || h.attrs.xmlns !== NS_FRAMING) {
      return new StreamError('invalid-namespace', `the stream must be opened with <open xmlns='${NS_FRAMING}'/>`);
    }
    return null;
  }

  open(from: string, id: string): string {
    return `<open xmlns='${NS_FRAMING}' id='${id}' from='${escapeAttr(from)}' version='1.0' xml:lang='en'/>`;
  }

  features(children: string): string {
    return `<stream:features xmlns:stream='${NS_STREAM}'>${children}</stream:features>`;
  }

  stanza(el: Element): string {
    // §3.3.3: a standalone element declares its namespace. The element is
    // shared by every session it is routed to, so only the text gets it.
    if (el.attrs.xmlns !== undefined) return serialize(el);
    const s = serialize(el);
    const at = 1 + el.name.length;
    const ns = el.name.startsWith('stream:') ? ` xmlns:stream='${NS_STREAM}'` : ` xmlns='${NS_CLIENT}'`;
    return s.slice(0, at) + ns + s.slice(at);
  }

  error(err: StreamError): string {
    // StreamError.toXml writes <stream:error> without a declaration of the prefix (the TCP stream header has it).
    const s = err.toXml();
    return s.replace('<stream:error', `<stream:error xmlns:stream='${NS_STREAM}'`);
  }

  close(): string {
    return `<close xmlns='${NS_FRAMING}'/>`;
  }

  // --- the parser's events ---------------------------------------------------

  onHeader(): void {
    // The parser's own root, written by #newParser.
  }

  onStanza(el: Element): void {
    if (this.#seen !== NONE || !this.#reading) {
      this.#fail('not-well-formed', 'a WebSocket message must hold exactly one XML element (RFC 7395 §3.3.3)');
      return;
    }
    this.#seen = ONE;
    this.#element = el;
  }

  onEnd(): void {
    this.#fail('not-well-formed', `</stream:stream> is not part of XMPP over WebSocket; close the stream with <close xmlns='${NS_FRAMING}'/> (RFC 7395 §3.6)`);
  }

  onError(condition: StreamErrorCondition, text: string): void {
    this.#fail(condition, text);
  }
}

/** The framing factory of the WebSocket transport. */
export function webSocketFraming(events: FramingEvents, limits: FramingLimits): Framing {
  return new WebSocketFraming(events, limits);
}
