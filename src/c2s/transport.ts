// What a client-to-server session needs of the connection under it. The
// session (stream state machine, SASL, bind, dispatch) speaks only to this
// interface and to a framing (framing.ts), so a new kind of connection (TCP
// with STARTTLS or direct TLS today, WebSocket per RFC 7395 next) is one
// file under transports/ that implements both, without the session changing.
//
// Shape of MongooseIM's mongoose_c2s_socket behaviour (send, activate, close,
// is_ssl, get_ip, tcp_to_tls) with Node's readable/writable vocabulary.

/**
 * What a transport reports, to the one session that took it. A transport
 * calls these on the session object itself, so no closure is made per
 * connection or per event.
 */
export interface TransportEvents {
  /** Names the connection in the transport's own logs. */
  readonly id: number;
  /**
   * Input, as it arrives: any slice of the byte stream for a stream
   * transport, exactly one message for a message transport (a WebSocket
   * text frame, RFC 7395 §3.3.1). Handed to the framing unchanged.
   */
  onData(data: Uint8Array): void;
  /** The peer ended its side (TCP FIN, a WebSocket close frame). */
  onEnd(): void;
  /** A connection error; 'close' follows. */
  onError(err: Error): void;
  /** The connection is gone, once, whatever ended it. */
  onClose(): void;
  /** The oldest write not yet taken was taken (by the operating system for TCP). Writes complete in order. */
  onWritten(): void;
}

export interface Transport {
  /** Starts delivering events to `events`; called once, by the session that takes the connection. */
  attach(events: TransportEvents): void;
  /**
   * Queues output. One call is one unit: on a message transport, one
   * message. Each write is reported taken through `onWritten`, in order.
   * Writing to a closed transport does nothing.
   */
  write(data: string): void;
  /**
   * Output given to `write` and not yet taken, in the unit `write` counts
   * (UTF-16 code units of the strings written): what the send-side
   * limits (max_output_buffer, send_timeout) look at.
   */
  readonly buffered: number;
  /** Stops reading input (the peer is then slowed by flow control, TCP's or the transport's own). */
  pause(): void;
  resume(): void;
  /** The connection is encrypted (direct TLS, STARTTLS done, or wss). */
  readonly secure: boolean;
  /**
   * STARTTLS (RFC 6120 §5.4.3.3): the TLS handshake starts over this
   * connection at once (the session has flushed <proceed/> before); the
   * promise settles when it is done, and rejects when it fails (the
   * connection is then closed). Present only on transports that can do it:
   * where it is absent, STARTTLS is never offered (RFC 7395 §3.8: over
   * WebSocket, TLS is the WebSocket's). Nothing read before the handshake
   * is handed on as if it had come over TLS; what was left of the read the
   * <starttls/> came in is dropped by the session's framing (Framing.restart).
   */
  startTls?(): Promise<void>;
  /** Ends the connection once pending output is out; a peer that does not close its side soon after is cut off. */
  end(): void;
  /** Cuts the connection now, dropping pending output. */
  destroy(): void;
  /** The peer's IP address, as auth bans count it; undefined once the connection is gone. */
  readonly remoteAddress: string | undefined;
  /** "address:port" of the peer, for logs. */
  readonly remote: string;
}
