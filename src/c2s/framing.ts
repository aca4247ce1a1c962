// How an XML stream is carried by a transport: how it opens and closes, and
// how stanzas are delimited. The session sees stream opens, stanzas, stream
// closes and framing errors as events, and asks the framing for the text of
// what it sends; it never writes a stream's framing itself. Two framings:
//
// - byte stream (RFC 6120 §4): `<?xml?><stream:stream ...>` opens, stanzas
//   follow as children of that root in any slicing of the bytes,
//   `</stream:stream>` closes; a restart is a new parser for a new header
//   (byte-stream-framing.ts; TCP).
// - framed elements (RFC 7395 §3.3): one complete element per message,
//   `<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>` opens (and
//   reopens after a restart, §3.5), `<close/>` closes (§3.6), stanzas and
//   `stream:`-prefixed elements carry their own namespace declarations
//   (WebSocket; a later file under transports/).
import type { Element } from '../xmpp/xml.ts';
import type { StreamError, StreamErrorCondition } from '../xmpp/errors.ts';
import type { StreamHeader, StreamParserLimits } from '../xmpp/stream-parser.ts';

export type { StreamHeader } from '../xmpp/stream-parser.ts';

/** What a framing reports to its session. */
export interface FramingEvents {
  /**
   * The peer opened the stream (a stream header; RFC 7395's <open/>), with
   * the attributes it sent: `to`, `version`, `xml:lang`... mean the same in
   * both framings. The session checks the framing's own rules through
   * `Framing.headerFault`, in the order of RFC 6120 §4.9.1.
   */
  onStreamOpen(header: StreamHeader): void;
  /** One first-level element of the stream. */
  onStanza(el: Element): void;
  /** The peer closed the stream (RFC 6120 §4.4; RFC 7395 §3.6). */
  onStreamClose(): void;
  /** The input broke XML or framing rules (RFC 6120 §4.9.3); nothing more is reported. */
  onStreamError(condition: StreamErrorCondition, text: string): void;
}

/** Parser limits before and after authentication, shared by every session of a listener. */
export interface FramingLimits {
  preAuth: StreamParserLimits;
  authed: StreamParserLimits;
}

export interface Framing {
  /**
   * Each element the session sends must reach the transport in a write of
   * its own (message transports: RFC 7395 §3.3.1, one element per message).
   * False for a byte stream, where a turn's output is joined into one write.
   */
  readonly elementPerWrite: boolean;
  /**
   * Input may be cut anywhere and handed over in pieces (a byte stream).
   * False where each input is one whole message (RFC 7395 §3.3.3): a piece
   * of one would be an incomplete element.
   */
  readonly divisibleInput: boolean;
  /** Input from the transport (TransportEvents.onData); events fire synchronously. */
  input(data: Uint8Array): void;
  /**
   * Stream restart (RFC 6120 §4.3.3: after STARTTLS, §5.4.3.3, and after
   * SASL success, §6.4.6): the peer's next input opens a new stream. If
   * called while input is being handled, whatever of that input comes after
   * the current element is discarded, never handled as part of the new
   * stream (bytes read before a TLS handshake did not come over TLS).
   * `authenticated` picks the limits of the new stream.
   */
  restart(authenticated: boolean): void;
  /** What is wrong with `header` as a stream opening in this framing (element name, namespaces, RFC 6120 §4.8), or null. */
  headerFault(header: StreamHeader): StreamError | null;
  /** The server's stream opening (RFC 6120 §4.7; RFC 7395 §3.4). */
  open(from: string, id: string): string;
  /** The <stream:features/> element around `children` (RFC 6120 §4.3.2). */
  features(children: string): string;
  /**
   * A stanza or other first-level element, serialised for this framing; null
   * when that is longer than `max` code units (then no more than about `max`
   * is built).
   */
  stanza(el: Element, max?: number): string | null;
  /**
   * The same, handed to `emit` in pieces of about `piece` code units each,
   * for output too large to build as one string (a roster result). A framing
   * whose transport takes one element per write does not offer it.
   */
  stanzaPieces?(el: Element, piece: number, emit: (s: string) => void): void;
  /** A stream error (RFC 6120 §4.9); the session closes the stream right after it. */
  error(err: StreamError): string;
  /** The server's end of the stream (RFC 6120 §4.4; RFC 7395 §3.6). */
  close(): string;
}

/** Makes the framing of one session; a transport's listener supplies it. */
export type FramingFactory = (events: FramingEvents, limits: FramingLimits) => Framing;
