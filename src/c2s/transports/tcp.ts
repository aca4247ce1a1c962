// XMPP over TCP (RFC 6120 §3): a plain socket, one upgraded by STARTTLS
// (§5), or direct TLS (XEP-0368), carrying the byte-stream framing
// (../byte-stream-framing.ts). The transport is the socket's wrapper and
// nothing more: one object per connection, found from the socket through a
// symbol, so that one set of listener functions serves every socket instead
// of a closure per event per connection.
import type { Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import type { Transport, TransportEvents } from '../transport.ts';

/** What the STARTTLS transports of a listener share. */
export interface TcpOptions {
  logger: Logger;
  /** The TLS context STARTTLS upgrades with (null: no STARTTLS on this listener). */
  tls: SecureContext | null;
  /** tls.handshake_timeout: ms a STARTTLS handshake may take. */
  handshakeTimeout: number;
}

/** The transport a socket belongs to. */
const TRANSPORT = Symbol('c2s transport');
type TransportSocket = Socket & { [TRANSPORT]?: TcpTransport };

/** After end(), ms the peer has to close its side before the socket is destroyed. */
const END_GRACE = 2000;

/** A TCP connection, plain or with direct TLS: no STARTTLS. */
export class TcpTransport implements Transport {
  #socket: Socket;
  #events: TransportEvents | null = null;
  /** Writes handed to the socket and not yet completed. */
  #writing = 0;
  /**
   * The write callback, made when writes start and dropped when none is
   * pending: one closure while output flows, none on an idle connection.
   */
  #written: (() => void) | null = null;

  constructor(socket: Socket) {
    this.#socket = socket;
    socket.setNoDelay(true);
  }

  attach(events: TransportEvents): void {
    this.#events = events;
    this.#listen(this.#socket);
  }

  /** A TLS socket (direct TLS, or after STARTTLS); read from the socket so the transport keeps no flag of its own. */
  get secure(): boolean {
    return (this.#socket as Partial<TLSSocket>).encrypted === true;
  }

  get buffered(): number {
    return this.#socket.writableLength;
  }

  get remoteAddress(): string | undefined {
    return this.#socket.remoteAddress;
  }

  get remote(): string {
    return `${this.#socket.remoteAddress}:${this.#socket.remotePort}`;
  }

  write(data: string): void {
    const socket = this.#socket;
    if (socket.destroyed) return;
    this.#writing++;
    socket.write(data, (this.#written ??= () => this.#onWritten()));
  }

  #onWritten(): void {
    if (--this.#writing === 0) this.#written = null;
    this.#events?.onWritten();
  }

  pause(): void {
    this.#socket.pause();
  }

  resume(): void {
    this.#socket.resume();
  }

  end(): void {
    const socket = this.#socket;
    socket.end();
    // A peer that never closes its side does not keep the socket.
    setTimeout(destroySocket, END_GRACE, socket).unref();
  }

  destroy(): void {
    this.#socket.destroy();
  }

  /**
   * STARTTLS, for StartTlsTransport: the TLS handshake over this socket,
   * which from now on carries only TLS. Nothing the plain socket read is
   * passed on as if it had come over TLS: its bytes go to the TLS layer,
   * and the session's framing drops what was left of the read the
   * <starttls/> came in (RFC 6120 §5.4.3.3).
   */
  protected upgrade(options: TcpOptions): Promise<void> {
    const context = options.tls;
    if (context === null || this.secure) return Promise.reject(new Error('STARTTLS is not available on this connection'));
    const raw = this.#socket;
    this.#unlisten(raw);
    const secure = new TLSSocket(raw, { isServer: true, secureContext: context });
    this.#socket = secure;
    this.#listen(secure);
    // Once per connection: a closure here costs nothing per event.
    return new Promise<void>((resolve, reject) => {
      // A client that never finishes the handshake is dropped (the direct TLS
      // listener has the same limit through tls.Server's handshakeTimeout).
      const timer = setTimeout(() => {
        options.logger.info({ what: 'c2s_tls_error', session: this.#events?.id, remote: this.remote, err: 'TLS handshake timed out' }, 'TLS handshake failed');
        secure.destroy();
      }, options.handshakeTimeout);
      timer.unref();
      secure.once('secure', () => {
        clearTimeout(timer);
        resolve();
      });
      secure.once('close', () => {
        clearTimeout(timer);
        reject(new Error('the connection closed during the TLS handshake'));
      });
    });
  }

  #listen(socket: Socket): void {
    (socket as TransportSocket)[TRANSPORT] = this;
    socket.on('data', TcpTransport.#onSocketData);
    socket.on('error', TcpTransport.#onSocketError);
    socket.on('close', TcpTransport.#onSocketClose);
    socket.on('end', TcpTransport.#onSocketEnd);
  }

  #unlisten(socket: Socket): void {
    socket.off('data', TcpTransport.#onSocketData);
    socket.off('error', TcpTransport.#onSocketError);
    socket.off('close', TcpTransport.#onSocketClose);
    socket.off('end', TcpTransport.#onSocketEnd);
    (socket as TransportSocket)[TRANSPORT] = undefined;
  }

  static #onSocketData(this: Socket, chunk: Buffer): void {
    const t = (this as TransportSocket)[TRANSPORT];
    if (t !== undefined) t.#events?.onData(chunk);
  }

  static #onSocketError(this: Socket, err: Error): void {
    const t = (this as TransportSocket)[TRANSPORT];
    if (t !== undefined) t.#events?.onError(err);
  }

  static #onSocketEnd(this: Socket): void {
    const t = (this as TransportSocket)[TRANSPORT];
    if (t !== undefined) t.#events?.onEnd();
  }

  static #onSocketClose(this: Socket): void {
    const t = (this as TransportSocket)[TRANSPORT];
    if (t !== undefined) t.#events?.onClose();
  }
}

/** A plain TCP connection on a listener that offers STARTTLS (RFC 6120 §5). */
export class StartTlsTransport extends TcpTransport {
  readonly #options: TcpOptions;

  constructor(socket: Socket, options: TcpOptions) {
    super(socket);
    this.#options = options;
  }

  startTls(): Promise<void> {
    return this.upgrade(this.#options);
  }
}

function destroySocket(socket: Socket): void {
  socket.destroy();
}
