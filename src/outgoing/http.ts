// One `[outgoing_pools.http.TAG]` pool: an undici Pool of keep-alive
// connections to one origin. Every way a request can end is reduced to an
// HttpOutcome, so callers never deal with exceptions from the network.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import type { buildConnector, Dispatcher } from 'undici';
import { fail } from '../config/schema.ts';
import type { HttpHeaders, HttpOutcome, HttpPool, HttpPoolConfig, HttpPoolTlsConfig } from './types.ts';
import { DEFAULT_PIPELINING, joinPath, normalizePrefix } from './url.ts';
import { createWriteCoalescer } from './coalesce.ts';

/** Bytes of a response body kept for the caller (logs, diagnostics), the rest read and dropped; of a 2xx, bytes read at most before the connection is closed. */
const MAX_RESPONSE_BODY = 64 * 1024;
/** Used when request_timeout = 0 (no request timeout) for the TCP/TLS handshake. */
const DEFAULT_CONNECT_TIMEOUT = 10_000;

/** Certificate verification failures that "selfsigned_peer" lets through. */
const SELF_SIGNED_CODES = new Set(['DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN']);

const TIMEOUT_CODES = new Set([
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'ETIMEDOUT',
  'PETREL_CONNECT_TIMEOUT',
]);
const REFUSED_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNABORTED',
]);
const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

type ErrLike = { code?: unknown; name?: unknown; message?: unknown; cause?: unknown; errors?: unknown };

function codesOf(err: unknown, depth = 0): string[] {
  if (typeof err !== 'object' || err === null || depth > 4) return [];
  const e = err as ErrLike;
  const out: string[] = [];
  if (typeof e.code === 'string') out.push(e.code);
  if (typeof e.name === 'string') out.push(e.name);
  // Happy-eyeballs connects fail with an AggregateError holding one error per address.
  if (Array.isArray(e.errors)) for (const sub of e.errors) out.push(...codesOf(sub, depth + 1));
  if (e.cause !== undefined) out.push(...codesOf(e.cause, depth + 1));
  return out;
}

function messageOf(err: unknown): string {
  if (typeof err === 'object' && err !== null) {
    const e = err as ErrLike;
    const code = typeof e.code === 'string' ? e.code : undefined;
    let msg = typeof e.message === 'string' && e.message !== '' ? e.message : undefined;
    if (msg === undefined && Array.isArray(e.errors) && e.errors.length > 0) msg = messageOf(e.errors[0]);
    if (msg === undefined) msg = String(err);
    return code !== undefined && !msg.includes(code) ? `${code}: ${msg}` : msg;
  }
  return String(err);
}

/** Maps anything undici, net or tls can throw to one of the fixed outcomes. */
export function classifyError(err: unknown): HttpOutcome {
  const codes = codesOf(err);
  const message = messageOf(err);
  if (codes.some((c) => c === 'TimeoutError' || TIMEOUT_CODES.has(c))) return { kind: 'timeout', message };
  if (codes.some((c) => TLS_CODES.has(c) || c.startsWith('ERR_SSL_') || c.startsWith('ERR_TLS_') || c.startsWith('ERR_OSSL_'))) {
    return { kind: 'tls', message };
  }
  if (codes.some((c) => REFUSED_CODES.has(c))) return { kind: 'refused', message };
  return { kind: 'error', message };
}

function readPem(file: string, tomlPath: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    return fail(tomlPath, `cannot read ${JSON.stringify(file)}: ${(e as Error).message}`);
  }
}

const VERSION_NAMES: Record<string, tls.SecureVersion> = { 'tlsv1.2': 'TLSv1.2', 'tlsv1.3': 'TLSv1.3' };

export interface TlsPlan {
  options: tls.ConnectionOptions;
  /** Accept self-signed chains, then check the host name ourselves. */
  selfSigned: boolean;
  /** Explicit SNI name, '' for none, undefined for the request's host. */
  servername: string | undefined;
  verify: boolean;
}

/** Node TLS options for a pool's `tls` table (`base`: its TOML path, for errors). */
export function planTls(t: HttpPoolTlsConfig | undefined, base: string): TlsPlan {
  const verifyMode = t?.verify_mode ?? 'peer';
  const verify = verifyMode !== 'none' && (t?.disconnect_on_failure ?? true);
  const selfSigned = verify && (verifyMode === 'selfsigned_peer' || verifyMode === 'selfsigned');
  const options: tls.ConnectionOptions = {};
  if (t !== undefined) {
    if (t.cacertfile !== undefined) options.ca = readPem(t.cacertfile, `${base}.cacertfile`);
    if (t.certfile !== undefined) options.cert = readPem(t.certfile, `${base}.certfile`);
    if (t.keyfile !== undefined) options.key = readPem(t.keyfile, `${base}.keyfile`);
    if (t.password !== undefined) options.passphrase = t.password;
    if (t.ciphers !== undefined) options.ciphers = t.ciphers;
    if (t.crl_files.length > 0) options.crl = t.crl_files.map((f, i) => readPem(f, `${base}.crl_files[${i}]`));
    if (t.versions !== undefined && t.versions.length > 0) {
      const vs = t.versions.map((v) => VERSION_NAMES[v]!).sort();
      options.minVersion = vs[0];
      options.maxVersion = vs[vs.length - 1];
    }
  }
  options.rejectUnauthorized = verify && !selfSigned;
  // MongooseIM: SNI is on by default but only takes effect when the peer is verified.
  const sni = t?.server_name_indication;
  let servername: string | undefined;
  if (!verify || sni?.enabled === false) servername = '';
  else if (sni?.host !== undefined) servername = sni.host;
  return { options, selfSigned, servername, verify };
}

function connectTimeoutError(host: string, port: number, ms: number): Error {
  const err = new Error(`connect to ${host}:${port} timed out after ${ms} ms`) as Error & { code: string };
  err.code = 'PETREL_CONNECT_TIMEOUT';
  return err;
}

/**
 * A connector that applies the pool's TLS plan. undici's own connector always
 * sends SNI and cannot accept a self-signed peer while still checking the
 * host name, both of which MongooseIM's options can ask for.
 */
function makeConnector(plan: TlsPlan, connectTimeout: number, onConnected?: (socket: net.Socket) => void): buildConnector.connector {
  return (opts, callback) => {
    let cb: buildConnector.Callback | null = callback;
    const finish = (err: Error | null, socket: net.Socket | tls.TLSSocket | null) => {
      if (cb === null) return;
      const c = cb;
      cb = null;
      clearTimeout(timer);
      if (err !== null) {
        socket?.destroy();
        c(err, null);
      } else {
        onConnected?.(socket!);
        c(null, socket!);
      }
    };
    const https = opts.protocol === 'https:';
    const port = opts.port !== '' ? Number(opts.port) : https ? 443 : 80;
    // URL host names keep IPv6 literals in brackets; sockets want them bare.
    const host = opts.hostname.startsWith('[') ? opts.hostname.slice(1, -1) : opts.hostname;
    let socket: net.Socket | tls.TLSSocket;
    if (https) {
      let servername = plan.servername ?? opts.servername;
      if (servername === undefined && net.isIP(host) === 0) servername = host;
      socket = tls.connect({ ...plan.options, host, port, servername: servername || undefined });
      socket.once('secureConnect', () => {
        const s = socket as tls.TLSSocket;
        if (plan.selfSigned && !s.authorized) {
          const code = (s.authorizationError as unknown as { code?: string } | null)?.code ?? String(s.authorizationError);
          if (!SELF_SIGNED_CODES.has(code)) {
            const err = new Error(`certificate verification failed: ${code}`) as Error & { code: string };
            err.code = code;
            return finish(err, s);
          }
          const identityErr = tls.checkServerIdentity(servername || host, s.getPeerCertificate());
          if (identityErr !== undefined) return finish(identityErr, s);
        }
        finish(null, s);
      });
    } else {
      socket = net.connect({ host, port });
      socket.once('connect', () => finish(null, socket));
    }
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    // Stays attached: after the handshake undici adds its own error handling.
    socket.on('error', (err) => finish(err, socket));
    const timer = setTimeout(() => finish(connectTimeoutError(host, port, connectTimeout), socket), connectTimeout);
  };
}

function toUndiciHeaders(h: HttpHeaders): Record<string, string> | string[] {
  if (!Array.isArray(h)) return h as Record<string, string>;
  const flat: string[] = [];
  for (const [k, v] of h as ReadonlyArray<readonly [string, string]>) flat.push(k, v);
  return flat;
}

function callTimeoutError(ms: number): Error {
  const err = new Error(`call_timeout: no answer within ${ms} ms`);
  err.name = 'TimeoutError';
  return err;
}

/**
 * One request on its way: undici's dispatch handler, and a node of the
 * pool's list of calls in the order they started. Every call of a pool has
 * the same call_timeout, so that order is also the order of their deadlines,
 * and one timer sweeping the list from its head bounds them all (instead of
 * a timer or an AbortSignal per request).
 *
 * A 2xx answer is the outcome as soon as its status and headers arrive: the
 * receiver has taken the request, and what its body says changes nothing.
 * The body is then read and dropped so the connection can be used again, but
 * only up to MAX_RESPONSE_BODY bytes and until the call's deadline: past
 * either, the connection is closed. So a body that never ends, or is huge,
 * neither holds a connection for long nor makes the request count as failed
 * (which would send an accepted event again).
 */
class Call implements Dispatcher.DispatchHandler {
  prev: Call | null = null;
  next: Call | null = null;
  readonly deadline: number;
  readonly t0: number;
  readonly #resolve: (o: HttpOutcome) => void;
  readonly #list: CallList;
  #controller: Dispatcher.DispatchController | null = null;
  #status = 0;
  #headers: Record<string, string | string[] | undefined> = {};
  #chunks: Buffer[] | null = null;
  #kept = 0;
  /** The outcome was given (the caller's promise resolved). */
  #done = false;
  /** A 2xx was given as the outcome; the rest of its body is read and dropped. */
  #draining = false;
  #drained = 0;

  constructor(list: CallList, t0: number, deadline: number, resolve: (o: HttpOutcome) => void) {
    this.#list = list;
    this.t0 = t0;
    this.deadline = deadline;
    this.#resolve = resolve;
  }

  /** Gives the outcome (once). */
  #answer(o: HttpOutcome): void {
    if (this.#done) return;
    this.#done = true;
    this.#resolve(o);
  }

  #finish(o: HttpOutcome): void {
    this.#list.remove(this);
    this.#answer(o);
  }

  /** Ends the request on its connection (which is closed). */
  #abort(err: Error): void {
    this.#list.remove(this);
    this.#controller?.abort(err);
  }

  /** call_timeout ran out: answer now (unless a 2xx already was the answer), and stop the request if it has started. */
  expire(ms: number): void {
    const err = callTimeoutError(ms);
    this.#finish(classifyError(err));
    this.#controller?.abort(err);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    // A call that timed out while it waited for a connection is not sent.
    if (this.#done) controller.abort(new Error('call_timeout'));
    else this.#controller = controller;
  }

  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    this.#status = statusCode;
    this.#headers = headers;
    if (statusCode >= 200 && statusCode < 300) {
      this.#draining = true;
      this.#answer({ kind: 'ok', status: statusCode, headers, body: '', timeMs: performance.now() - this.t0 });
    }
  }

  onResponseData(_c: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#draining) {
      this.#drained += chunk.length;
      if (this.#drained > MAX_RESPONSE_BODY) this.#abort(new Error('response body of a 2xx too large; connection closed'));
      return;
    }
    // Only a bounded prefix of the body is kept; the rest is read and dropped.
    if (this.#kept < MAX_RESPONSE_BODY) {
      (this.#chunks ??= []).push(chunk);
      this.#kept += chunk.length;
    }
  }

  onResponseEnd(): void {
    if (this.#draining) return this.#list.remove(this);
    const timeMs = performance.now() - this.t0;
    const chunks = this.#chunks;
    let text = '';
    if (chunks !== null) {
      const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      text = all.subarray(0, MAX_RESPONSE_BODY).toString('utf8');
    }
    const status = this.#status;
    const kind = status >= 200 && status < 300 ? 'ok' : 'http_status';
    this.#finish({ kind, status, headers: this.#headers, body: text, timeMs });
  }

  onResponseError(_c: Dispatcher.DispatchController | null, err: Error): void {
    this.#finish(classifyError(err));
  }
}

/** The calls of one pool under way, oldest first; swept by one timer for call_timeout. */
class CallList {
  head: Call | null = null;
  tail: Call | null = null;
  size = 0;

  push(c: Call): void {
    c.prev = this.tail;
    if (this.tail !== null) this.tail.next = c;
    else this.head = c;
    this.tail = c;
    this.size++;
  }

  remove(c: Call): void {
    if (c.prev !== null) c.prev.next = c.next;
    else if (this.head === c) this.head = c.next;
    else return;
    if (c.next !== null) c.next.prev = c.prev;
    else this.tail = c.prev;
    c.prev = c.next = null;
    this.size--;
  }

  /** Ends the calls whose deadline has passed. */
  sweep(now: number, ms: number): void {
    let c = this.head;
    while (c !== null && c.deadline <= now) {
      const next = c.next;
      c.expire(ms);
      c = next;
    }
  }
}

/** The tag and configuration each pool was created from, so that another thread can open its twin. */
const origins = new WeakMap<HttpPool, { tag: string; cfg: HttpPoolConfig }>();

/** What `pool` was created from, when createHttpPool made it. */
export function httpPoolOrigin(pool: HttpPool): { tag: string; cfg: HttpPoolConfig } | undefined {
  return origins.get(pool);
}

/**
 * Creates the pool for `[outgoing_pools.http.<tag>]`. Reads TLS files now, so
 * a missing certificate is reported at start-up with its TOML path.
 */
export function createHttpPool(tag: string, cfg: HttpPoolConfig): HttpPool {
  const conn = cfg.connection;
  const origin = new URL(conn.host).origin;
  const prefix = normalizePrefix(conn.path_prefix);
  const https = origin.startsWith('https:');
  const tlsPlan = planTls(https ? conn.tls : undefined, `outgoing_pools.http.${tag}.connection.tls`);
  const requestTimeout = conn.request_timeout;
  const connectTimeout = requestTimeout > 0 ? requestTimeout : DEFAULT_CONNECT_TIMEOUT;
  const pipelining = conn.pipelining ?? DEFAULT_PIPELINING;
  // With pipelining, the requests of a burst share each connection's write.
  const coalescer = pipelining > 1 ? createWriteCoalescer() : null;
  const pool = new Pool(origin, {
    connections: cfg.workers,
    pipelining,
    // 0 turns undici's timeouts off, which is what request_timeout = 0 means here.
    headersTimeout: requestTimeout,
    bodyTimeout: requestTimeout,
    keepAliveTimeout: 30_000,
    connect: makeConnector(tlsPlan, connectTimeout, coalescer === null ? undefined : (sock) => coalescer.track(sock)),
  });
  const maxPending = cfg.max_worker_queue_len !== undefined ? cfg.workers * (cfg.max_worker_queue_len + 1) : Infinity;
  let closed = false;
  const calls = new CallList();
  const callTimeout = cfg.call_timeout;
  // call_timeout bounds the whole call, waiting for a connection included, as
  // wpool:call/4 does in MongooseIM. The sweep runs often enough that a call
  // ends at most an eighth of call_timeout (and at most 250 ms) late.
  const sweepMs = Math.max(5, Math.min(250, Math.floor(callTimeout / 8)));
  let sweeper: NodeJS.Timeout | null = null;
  const sweep = () => {
    calls.sweep(performance.now(), callTimeout);
    if (calls.size === 0 && sweeper !== null) {
      clearInterval(sweeper);
      sweeper = null;
    }
  };

  function post(path: string, headers: HttpHeaders, body: string | Uint8Array): Promise<HttpOutcome> {
    if (closed) return Promise.resolve({ kind: 'error', message: `pool ${tag} is closed` });
    if (calls.size >= maxPending) return Promise.resolve({ kind: 'error', message: `pool ${tag} queue is full (max_worker_queue_len)` });
    return new Promise<HttpOutcome>((resolve) => {
      const t0 = performance.now();
      const call = new Call(calls, t0, t0 + callTimeout, resolve);
      calls.push(call);
      if (sweeper === null) {
        sweeper = setInterval(sweep, sweepMs);
        sweeper.unref();
      }
      try {
        if (coalescer !== null) {
          coalescer.hold();
          // A webhook delivery may be sent twice anyway (at-least-once, with the
          // same webhook-id), so it can be pipelined, and its answer is quick:
          // undici pipelines only idempotent, non-blocking requests.
          pool.dispatch({ path: joinPath(prefix, path), method: 'POST', headers: toUndiciHeaders(headers), body, idempotent: true, blocking: false }, call);
        } else pool.dispatch({ path: joinPath(prefix, path), method: 'POST', headers: toUndiciHeaders(headers), body }, call);
      } catch (err) {
        call.onResponseError(null, err as Error);
      }
    });
  }

  const self: HttpPool = {
    tag,
    baseUrl: origin + prefix,
    workers: cfg.workers,
    url: (path: string) => origin + joinPath(prefix, path),
    post,
    async close() {
      if (closed) return;
      closed = true;
      await pool.close().catch(() => pool.destroy());
    },
  };
  origins.set(self, { tag, cfg });
  return self;
}
