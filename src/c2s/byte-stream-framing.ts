// The framing of XMPP over a byte stream (RFC 6120 §4): the client's
// `<stream:stream>` header opens the stream, stanzas are its children in
// whatever slices the bytes arrive, `</stream:stream>` ends it. The streaming
// parser (xmpp/stream-parser.ts) does the reading; a stream restart is a new
// parser. Used by the TCP transport, plain or TLS.
import { escapeAttr, serialize, serializeBounded, serializePieces, type Element } from '../xmpp/xml.ts';
import { StreamError, type StreamErrorCondition } from '../xmpp/errors.ts';
import { StreamParser, type StreamHeader, type StreamParserEvents } from '../xmpp/stream-parser.ts';
import { NS_CLIENT, NS_STREAM } from '../xmpp/ns.ts';
import type { Framing, FramingEvents, FramingLimits } from './framing.ts';

const IDLE = 0;
const READING = 1;
const DISCARDING = 2;

/**
 * One per session. It is also the events object of its parser, so that a
 * parser costs no adapter object, and it forwards the parser's events to
 * the session unless they come from the rest of a read that a restart ended.
 */
export class ByteStreamFraming implements Framing, StreamParserEvents {
  readonly elementPerWrite = false;
  readonly divisibleInput = true;
  #events: FramingEvents;
  #limits: FramingLimits;
  #parser: StreamParser;
  /**
   * IDLE; READING while the parser reads a chunk; DISCARDING once a restart
   * happened during that read: the old parser's remaining events are dropped.
   */
  #phase = IDLE;

  constructor(events: FramingEvents, limits: FramingLimits) {
    this.#events = events;
    this.#limits = limits;
    this.#parser = new StreamParser(this, limits.preAuth);
  }

  input(data: Uint8Array): void {
    this.#phase = READING;
    try {
      this.#parser.write(data);
    } finally {
      this.#phase = IDLE;
    }
  }

  restart(authenticated: boolean): void {
    // The old parser may still be inside its write; it finishes the chunk
    // with nobody listening (RFC 6120 §5.4.3.3: nothing read before the TLS
    // handshake counts as part of the stream over TLS).
    if (this.#phase === READING) this.#phase = DISCARDING;
    this.#parser = new StreamParser(this, authenticated ? this.#limits.authed : this.#limits.preAuth);
  }

  headerFault(h: StreamHeader): StreamError | null {
    // RFC 6120 §4.8.1, §4.8.2: the root in the stream namespace, jabber:client as content namespace.
    if (h.name !== 'stream:stream' || h.attrs['xmlns:stream'] !== NS_STREAM) {
      return new StreamError('invalid-namespace', 'the stream element must be stream:stream in ' + NS_STREAM);
    }
    if (h.attrs.xmlns !== NS_CLIENT) return new StreamError('invalid-namespace', 'the content namespace must be jabber:client');
    return null;
  }

  open(from: string, id: string): string {
    return `<?xml version='1.0'?><stream:stream xmlns='${NS_CLIENT}' xmlns:stream='${NS_STREAM}' id='${id}' from='${escapeAttr(from)}' version='1.0' xml:lang='en'>`;
  }

  features(children: string): string {
    return '<stream:features>' + children + '</stream:features>';
  }

  stanza(el: Element, max?: number): string | null {
    return max === undefined ? serialize(el) : serializeBounded(el, max);
  }

  stanzaPieces(el: Element, piece: number, emit: (s: string) => void): void {
    serializePieces(el, piece, emit);
  }

  error(err: StreamError): string {
    return err.toXml();
  }

  close(): string {
    return '</stream:stream>';
  }

  // --- the parser's events ---------------------------------------------------

  onHeader(h: StreamHeader): void {
    if (this.#phase !== DISCARDING) this.#events.onStreamOpen(h);
  }

  onStanza(el: Element): void {
    if (this.#phase !== DISCARDING) this.#events.onStanza(el);
  }

  onEnd(): void {
    if (this.#phase !== DISCARDING) this.#events.onStreamClose();
  }

  onError(condition: StreamErrorCondition, text: string): void {
    if (this.#phase !== DISCARDING) this.#events.onStreamError(condition, text);
  }
}

/** The framing factory of byte-stream transports. */
export function byteStreamFraming(events: FramingEvents, limits: FramingLimits): Framing {
  return new ByteStreamFraming(events, limits);
}
