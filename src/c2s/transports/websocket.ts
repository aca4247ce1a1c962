// XMPP over WebSocket (RFC 7395): the connection of a request that a
// [[listen.http]] listener hands over after an Upgrade, carrying the framed
// elements of ../websocket-framing.ts. The WebSocket protocol itself (RFC
// 6455: the handshake, frames, masking, fragmentation, UTF-8 checks, control
// frames) is the `ws` library's; this file adds what XMPP needs of it: the
// `xmpp` subprotocol, the origin check, one text message per element, the
// idle timeout and server pings of MongooseIM's mongoose_websocket_handler,
// and one session per connection made by the c2s code every transport shares.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import type { Transport, TransportEvents } from '../transport.ts';
import type { C2SContext, C2SSession } from '../session.ts';
import { acceptC2S, releaseC2S } from '../listener.ts';
import { holdsConnectionSlot } from '../../http/connection-slots.ts';

/** RFC 7395 §3.1: the subprotocol a client must offer. */
export const XMPP_SUBPROTOCOL = 'xmpp';

/** RFC 6455 §7.4.1: close codes used here. */
const NORMAL = 1000;
const GOING_AWAY = 1001;
const UNSUPPORTED_DATA = 1003;

/** After end(), ms the peer has to finish the close handshake before the connection is cut. */
const END_GRACE = 2000;

export interface WebSocketEndpointOptions {
  logger: Logger;
  /** The context of every session of this endpoint (framing, limits, ...). */
  ctx: C2SContext;
  /** timeout: ms without anything from the client (message, ping or pong) before the connection is closed (0 = never). */
  timeout: number;
  /** ping_rate: ms between the server's pings (0 = no pings). */
  pingRate: number;
  /** Bytes of one WebSocket message; a longer one is refused by `ws` (close code 1009) before it is read. */
  maxFrameSize: number;
  /** Origins allowed to connect, compared exactly (null: any). */
  allowedOrigins: ReadonlySet<string> | null;
  /** For logs: where the handler is configured. */
  where: string;
}

/** The transport a WebSocket belongs to. */
const TRANSPORT = Symbol('c2s websocket transport');
type TransportSocket = WebSocket & { [TRANSPORT]?: WebSocketTransport };

/** One WebSocket connection under one session. */
/**
 * Holds the socket's writes until the end of the current turn, so that the
 * frames of one turn's stanzas (one WebSocket message each, RFC 7395
 * §3.3.1) leave in one write to the kernel, as a TCP session's one string
 * per turn does. Measured by the benchmark's WebSocket phases
 * (`npm run bench -- --transport=tcp,ws`): routing over WebSocket went from
 * 72 % to 81 % of TCP's messages per second with it (docs/benchmarks.md).
 */
let corkForTurn: (t: WebSocketTransport) => void;

export class WebSocketTransport implements Transport {
  #ws: WebSocket;
  #events: TransportEvents | null = null;
  readonly #secure: boolean;
  readonly #remoteAddress: string | undefined;
  readonly #remote: string;
  readonly #timeout: number;
  /** Date.now() of the last thing read: the idle timer checks it rather than being reset per message. */
  #lastSeen = Date.now();
  /** Reading is paused (shaper, flow control): the client cannot be seen, so it is not idle meanwhile. */
  #paused = false;
  #idleTimer: NodeJS.Timeout | null = null;
  #pingTimer: NodeJS.Timeout | null = null;
  #written: ((err?: Error) => void) | null = null;
  #writing = 0;
  #ended = false;
  /** The TCP (or TLS) socket under the WebSocket, corked for the rest of a turn by the first write of it. */
  readonly #socket: Duplex & { cork(): void; uncork(): void };
  #corked = false;

  constructor(ws: WebSocket, req: IncomingMessage, o: Pick<WebSocketEndpointOptions, 'timeout' | 'pingRate'>) {
    this.#ws = ws;
    const socket = req.socket;
    this.#socket = socket;
    this.#secure = (socket as Partial<TLSSocket>).encrypted === true;
    this.#remoteAddress = socket.remoteAddress;
    this.#remote = `${socket.remoteAddress}:${socket.remotePort}`;
    this.#timeout = o.timeout;
    (ws as TransportSocket)[TRANSPORT] = this;
    if (o.timeout > 0) {
      this.#idleTimer = setTimeout(WebSocketTransport.#idleCheck, o.timeout, this);
      this.#idleTimer.unref();
    }
    if (o.pingRate > 0) {
      this.#pingTimer = setInterval(WebSocketTransport.#ping, o.pingRate, this);
      this.#pingTimer.unref();
    }
  }

  attach(events: TransportEvents): void {
    this.#events = events;
    const ws = this.#ws;
    ws.on('message', WebSocketTransport.#onMessage);
    ws.on('ping', WebSocketTransport.#onControl);
    ws.on('pong', WebSocketTransport.#onControl);
    ws.on('error', WebSocketTransport.#onError);
    ws.on('close', WebSocketTransport.#onClose);
  }

  get secure(): boolean {
    return this.#secure;
  }

  /** Bytes queued in `ws` and in the socket under it. */
  get buffered(): number {
    return this.#ws.bufferedAmount;
  }

  get remoteAddress(): string | undefined {
    return this.#ws.readyState === this.#ws.CLOSED ? undefined : this.#remoteAddress;
  }

  get remote(): string {
    return this.#remote;
  }

  write(data: string): void {
    const ws = this.#ws;
    if (ws.readyState !== ws.OPEN) return;
    this.#writing++;
    corkForTurn(this);
    // One text message per write (RFC 7395 §3.3.1); the callback says the socket took it.
    ws.send(data, (this.#written ??= () => this.#onWritten()));
  }

  static {
    corkForTurn = (t) => {
      if (t.#corked) return;
      t.#corked = true;
      t.#socket.cork();
      process.nextTick(WebSocketTransport.#uncork, t);
    };
  }

  static #uncork(t: WebSocketTransport): void {
    t.#corked = false;
    t.#socket.uncork();
  }

  #onWritten(): void {
    if (--this.#writing === 0) this.#written = null;
    this.#events?.onWritten();
  }

  pause(): void {
    this.#paused = true;
    this.#ws.pause();
  }

  resume(): void {
    this.#paused = false;
    // The time spent paused does not count as idle.
    this.#lastSeen = Date.now();
    this.#ws.resume();
  }

  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#stopTimers();
    const ws = this.#ws;
    if (ws.readyState === ws.OPEN) ws.close(NORMAL);
    // A peer that never answers the close frame does not keep the connection.
    setTimeout(terminate, END_GRACE, ws).unref();
  }

  destroy(): void {
    this.#stopTimers();
    this.#ws.terminate();
  }

  #stopTimers(): void {
    if (this.#idleTimer !== null) clearTimeout(this.#idleTimer);
    if (this.#pingTimer !== null) clearInterval(this.#pingTimer);
    this.#idleTimer = null;
    this.#pingTimer = null;
  }

  static #idleCheck(t: WebSocketTransport): void {
    const idle = t.#paused ? 0 : Date.now() - t.#lastSeen;
    if (idle < t.#timeout) {
      t.#idleTimer = setTimeout(WebSocketTransport.#idleCheck, t.#timeout - idle, t);
      t.#idleTimer.unref();
      return;
    }
    t.#idleTimer = null;
    // MongooseIM's timeout (Cowboy's idle_timeout): the stream ends as if the client had closed it.
    t.#events?.onEnd();
    t.end();
  }

  static #ping(t: WebSocketTransport): void {
    const ws = t.#ws;
    if (ws.readyState === ws.OPEN) ws.ping();
  }

  static #onMessage(this: WebSocket, data: RawData, isBinary: boolean): void {
    const t = (this as TransportSocket)[TRANSPORT];
    if (t === undefined) return;
    t.#lastSeen = Date.now();
    if (isBinary) {
      // RFC 7395 §3.3.1: XMPP is carried in text messages only; RFC 6455
      // §7.4.1 has a close code for data of a type the endpoint does not take.
      t.#stopTimers();
      this.close(UNSUPPORTED_DATA, 'XMPP over WebSocket is sent in text messages (RFC 7395)');
      // The session ends with the connection already closing: nothing more is sent.
      t.#events?.onEnd();
      return;
    }
    // With fragmented messages ws hands over an array of the fragments.
    t.#events?.onData(Array.isArray(data) ? Buffer.concat(data) : data instanceof ArrayBuffer ? new Uint8Array(data) : data);
  }

  static #onControl(this: WebSocket): void {
    const t = (this as TransportSocket)[TRANSPORT];
    if (t !== undefined) t.#lastSeen = Date.now();
  }

  static #onError(this: WebSocket, err: Error): void {
    const t = (this as TransportSocket)[TRANSPORT];
    if (t !== undefined) t.#events?.onError(err);
  }

  static #onClose(this: WebSocket): void {
    const t = (this as TransportSocket)[TRANSPORT];
    if (t === undefined) return;
    t.#stopTimers();
    // The peer's close frame (or a dropped connection) ends the stream; then the connection is gone.
    t.#events?.onEnd();
    t.#events?.onClose();
    (this as TransportSocket)[TRANSPORT] = undefined;
  }
}

function destroyDuplex(socket: Duplex): void {
  socket.destroy();
}

function terminate(ws: WebSocket): void {
  ws.terminate();
}

/** The offered subprotocol that is RFC 7395's, matched without regard to case as MongooseIM does, or undefined. */
export function xmppSubprotocol(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  for (const p of header.split(',')) {
    const name = p.trim();
    if (name.toLowerCase() === XMPP_SUBPROTOCOL) return name;
  }
  return undefined;
}

/**
 * An HTTP answer on a connection that asked for an upgrade and does not get
 * it; the socket is destroyed once the answer is written (as `ws` does), so
 * that its connection slot is given back whatever the peer does.
 */
function refuse(socket: Duplex, status: number, reason: string, text: string, headers = ''): void {
  if (!socket.writable) return void socket.destroy();
  socket.once('finish', destroyThis);
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\n${headers}Content-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`);
  // A peer that does not read does not keep the socket.
  setTimeout(destroyDuplex, END_GRACE, socket).unref();
}

function destroyThis(this: Duplex): void {
  this.destroy();
}

/**
 * The answer to a handshake `ws` refuses (RFC 6455 §4.2.1: no or a bad
 * Sec-WebSocket-Key, an Upgrade other than websocket, a malformed
 * Sec-WebSocket-Protocol list, ...). With a `wsClientError` listener, `ws`
 * leaves answering and closing to it, so it is done here: 400, or for a
 * version it does not speak 426 with the version it does (§4.4), 405 for a
 * method other than GET.
 */
function refuseHandshake(socket: Duplex, err: Error): void {
  if (/Sec-WebSocket-Version/i.test(err.message)) {
    return refuse(socket, 426, 'Upgrade Required', 'WebSocket version 13 only (RFC 6455)\n', 'Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n');
  }
  if (/method/i.test(err.message)) return refuse(socket, 405, 'Method Not Allowed', 'a WebSocket handshake is a GET\n', 'Allow: GET\r\n');
  refuse(socket, 400, 'Bad Request', `${err.message}\n`);
}

export interface WebSocketEndpoint {
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Ends every session of the endpoint (<close/>, then the close handshake), cutting what is left after a grace period. */
  close(): Promise<void>;
  readonly sessions: ReadonlySet<C2SSession>;
}

/** Accepts WebSocket connections for XMPP sessions. */
export function webSocketEndpoint(o: WebSocketEndpointOptions): WebSocketEndpoint {
  const sessions = new Set<C2SSession>();
  const sockets = new Set<WebSocket>();
  const ctx: C2SContext = { ...o.ctx, released: (s) => releaseC2S(o.ctx, sessions, s) };
  const wss = new WebSocketServer({
    noServer: true,
    clientTracking: false,
    maxPayload: o.maxFrameSize,
    // Compression is refused: it costs memory per connection and lets a small frame inflate into a large one.
    perMessageDeflate: false,
    handleProtocols: (offered) => {
      for (const p of offered) if (p.toLowerCase() === XMPP_SUBPROTOCOL) return p;
      return false;
    },
  });
  wss.on('wsClientError', (err, socket) => {
    o.logger.debug({ what: 'ws_handshake_refused', handler: o.where, remote: (socket as { remoteAddress?: string }).remoteAddress, err: err.message }, 'WebSocket handshake refused');
    refuseHandshake(socket, err);
  });
  function forget(this: WebSocket): void {
    sockets.delete(this);
  }
  let closing = false;
  return {
    sessions,
    upgrade(req, socket, head) {
      if (closing) return refuse(socket, 503, 'Service Unavailable', 'the server is stopping\n');
      const origin = req.headers.origin;
      if (o.allowedOrigins !== null && (origin === undefined || !o.allowedOrigins.has(origin))) {
        o.logger.info({ what: 'ws_origin_refused', handler: o.where, remote: req.socket.remoteAddress, origin }, 'WebSocket connection from an origin not in allowed_origins refused');
        return refuse(socket, 403, 'Forbidden', 'this origin may not connect\n');
      }
      // RFC 7395 §3.1: a connection is XMPP only if both ends agreed on the subprotocol.
      if (xmppSubprotocol(req.headers['sec-websocket-protocol']) === undefined) {
        return refuse(socket, 400, 'Bad Request', 'XMPP over WebSocket needs the "xmpp" subprotocol (Sec-WebSocket-Protocol: xmpp, RFC 7395 §3.1)\n');
      }
      // The c2s connection limits count WebSocket connections with the TCP
      // ones. The HTTP listener took this connection's slot when it accepted
      // it (and gives it back when the socket closes): it keeps that one.
      // Otherwise one is taken here, and past the limits the upgrade is refused.
      const slots = holdsConnectionSlot(socket) ? undefined : o.ctx.connections;
      const admitted = slots?.admit(req.socket.remoteAddress);
      if (admitted !== undefined && 'refused' in admitted) {
        o.ctx.metrics?.connectionRefused(admitted.refused);
        o.logger.info({ what: 'c2s_connection_refused', reason: admitted.refused, remote: req.socket.remoteAddress, handler: o.where }, 'WebSocket connection refused: too many connections');
        return refuse(socket, 503, 'Service Unavailable', admitted.refused === 'global_limit' ? 'the server has too many connections; try again later\n' : 'too many connections from this address\n');
      }
      if (admitted !== undefined) socket.once('close', () => slots!.release(admitted.key));
      wss.handleUpgrade(req, socket, head, (ws) => {
        sockets.add(ws);
        ws.once('close', forget);
        acceptC2S(new WebSocketTransport(ws, req, o), ctx, sessions);
      });
    },
    close() {
      closing = true;
      for (const s of sessions) s.close();
      for (const ws of sockets) if (ws.readyState === ws.OPEN) ws.close(GOING_AWAY);
      if (sockets.size === 0) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          for (const ws of sockets) ws.terminate();
          resolve();
        }, END_GRACE + 500);
        timer.unref();
        const check = (): void => {
          if (sockets.size === 0) {
            clearTimeout(timer);
            resolve();
          }
        };
        for (const ws of sockets) ws.once('close', () => setImmediate(check));
      });
    },
  };
}
