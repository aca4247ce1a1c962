// Shared pieces of the event pusher's end-to-end tests: web services that
// record what Petrel POSTs to them, TOML for pools and handlers, Prometheus
// scraping, and certificates carrying a subjectAltName for "localhost".
import { execFile } from 'node:child_process';
import { copyFile, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCli, tempDir } from '../helpers/server.ts';
import { connect, type ConnectOptions, type TestClient } from '../helpers/client.ts';

export const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));

/** One request a web service received. */
export interface Received {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  text: string;
  /** Date.now() when the body had been read. */
  at: number;
}

export interface Answer {
  status: number;
  /** Milliseconds to hold the answer. */
  delayMs?: number;
  body?: string;
}

export interface WebhookOptions {
  /** Serve HTTPS with this certificate. */
  tls?: { certfile: string; keyfile: string };
  /** 0 (the default) picks a free port; with several addresses every one gets the same port. */
  port?: number;
  /** Addresses to bind; 127.0.0.1 by default. Any after the first may be missing on this machine. */
  addresses?: string[];
  respond?: (r: Received) => Answer;
}

type Waiter = { pred: (r: Received) => boolean; count: number; resolve: (rs: Received[]) => void };

/** An HTTP(S) server that records every request and answers as told. */
export class Webhook {
  readonly requests: Received[] = [];
  /** Requests received and not answered yet. */
  pending = 0;
  respond: (r: Received) => Answer;
  readonly #servers: Array<http.Server | https.Server>;
  readonly #held = new Set<() => void>();
  #waiters: Waiter[] = [];
  readonly scheme: 'http' | 'https';

  private constructor(servers: Array<http.Server | https.Server>, scheme: 'http' | 'https', respond: (r: Received) => Answer) {
    this.#servers = servers;
    this.scheme = scheme;
    this.respond = respond;
  }

  static async start(o: WebhookOptions = {}): Promise<Webhook> {
    const tlsOpts = o.tls === undefined ? undefined : { cert: await readFile(o.tls.certfile), key: await readFile(o.tls.keyfile) };
    const addresses = o.addresses ?? ['127.0.0.1'];
    const servers: Array<http.Server | https.Server> = [];
    const hook = new Webhook(servers, tlsOpts === undefined ? 'http' : 'https', o.respond ?? (() => ({ status: 204 })));
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => hook.#onRequest(req, res);
    let port = o.port ?? 0;
    try {
      for (const address of addresses) {
        const s = tlsOpts === undefined ? http.createServer(handler) : https.createServer(tlsOpts, handler);
        servers.push(s);
        try {
          await new Promise<void>((resolve, reject) => {
            s.once('error', reject);
            s.listen(port, address, () => {
              s.off('error', reject);
              resolve();
            });
          });
        } catch (err) {
          // A further address the machine lacks (no IPv6) is left out; the first one must work.
          const code = (err as NodeJS.ErrnoException).code;
          if (servers.length > 1 && (code === 'EADDRNOTAVAIL' || code === 'EAFNOSUPPORT')) {
            servers.pop();
            continue;
          }
          throw err;
        }
        port = (s.address() as AddressInfo).port;
      }
    } catch (err) {
      await hook.close();
      throw err;
    }
    return hook;
  }

  get port(): number {
    return (this.#servers[0]!.address() as AddressInfo).port;
  }

  /** "http://127.0.0.1:PORT" (or https://localhost:PORT, the name its certificate carries). */
  get origin(): string {
    return this.scheme === 'https' ? `https://localhost:${this.port}` : `http://127.0.0.1:${this.port}`;
  }

  #onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const r: Received = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body, text: body.toString('utf8'), at: Date.now() };
      this.requests.push(r);
      this.pending++;
      this.#waiters = this.#waiters.filter((w) => {
        const got = this.requests.filter(w.pred);
        if (got.length < w.count) return true;
        w.resolve(got);
        return false;
      });
      const a = this.respond(r);
      const answer = () => {
        this.#held.delete(answer);
        clearTimeout(timer);
        this.pending--;
        if (!res.writableEnded && !res.destroyed) res.writeHead(a.status, { 'content-type': 'text/plain' }).end(a.body ?? '');
      };
      this.#held.add(answer);
      const timer = setTimeout(answer, a.delayMs ?? 0);
    });
  }

  /** Answers every held request now; later requests are answered at once with 204. */
  release(): void {
    this.respond = () => ({ status: 204 });
    for (const answer of [...this.#held]) answer();
  }

  matching(pred: (r: Received) => boolean): Received[] {
    return this.requests.filter(pred);
  }

  /** Resolves with every matching request once there are at least `count` of them. */
  waitFor(pred: (r: Received) => boolean, count = 1, timeoutMs = 10_000): Promise<Received[]> {
    const got = this.requests.filter(pred);
    if (got.length >= count) return Promise.resolve(got);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        const seen = this.requests.map((r) => `${r.method} ${r.url} ${r.text.slice(0, 200)}`).join('\n');
        reject(new Error(`fewer than ${count} matching requests within ${timeoutMs} ms; received:\n${seen}`));
      }, timeoutMs);
      const waiter: Waiter = {
        pred,
        count,
        resolve: (rs) => {
          clearTimeout(timer);
          resolve(rs);
        },
      };
      this.#waiters.push(waiter);
    });
  }

  async close(): Promise<void> {
    this.release();
    await Promise.all(
      this.#servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            if (!s.listening) return resolve();
            s.close(() => resolve());
            s.closeAllConnections();
          }),
      ),
    );
  }
}

/** A request whose body (form or JSON) carries this text somewhere. */
export function carrying(text: string): (r: Received) => boolean {
  return (r) => r.text.includes(text) || decodeForm(r.text).message === text;
}

export function decodeForm(text: string): Record<string, string> {
  return Object.fromEntries(new URLSearchParams(text));
}

/** A unique, recognisable message text. */
export function unique(label: string): string {
  return `${label}-${Math.random().toString(36).slice(2, 10)}`;
}

// ---------------------------------------------------------------- TOML

export interface PoolToml {
  tag: string;
  host: string;
  path_prefix?: string;
  workers?: number;
  request_timeout?: number;
  call_timeout?: number;
  /** Lines of [outgoing_pools.http.TAG.connection.tls], e.g. { cacertfile: "cert.pem" }. */
  tls?: Record<string, string>;
}

export function poolToml(p: PoolToml): string {
  let t = `[outgoing_pools.http.${p.tag}]\n`;
  if (p.workers !== undefined) t += `  workers = ${p.workers}\n`;
  if (p.call_timeout !== undefined) t += `  call_timeout = ${p.call_timeout}\n`;
  t += `  [outgoing_pools.http.${p.tag}.connection]\n    host = ${JSON.stringify(p.host)}\n`;
  if (p.path_prefix !== undefined) t += `    path_prefix = ${JSON.stringify(p.path_prefix)}\n`;
  if (p.request_timeout !== undefined) t += `    request_timeout = ${p.request_timeout}\n`;
  if (p.tls !== undefined) {
    t += `    [outgoing_pools.http.${p.tag}.connection.tls]\n`;
    for (const [k, v] of Object.entries(p.tls)) t += `      ${k} = ${JSON.stringify(v)}\n`;
  }
  return t + '\n';
}

export interface HandlerToml {
  pool_name?: string;
  path?: string;
  callback_module?: string;
}

/** One [[modules.mod_event_pusher.backend.http]] table per handler; `extra` lines go into each. */
export function handlersToml(handlers: HandlerToml[], extra = ''): string {
  let t = '';
  for (const h of handlers) {
    t += '[[modules.mod_event_pusher.backend.http]]\n';
    for (const [k, v] of Object.entries(h)) if (v !== undefined) t += `  ${k} = ${JSON.stringify(v)}\n`;
    t += extra + '\n';
  }
  return t;
}

/** A [[listen.http]] listener with MongooseIM's Prometheus handler at /metrics. */
export function prometheusToml(port: number): string {
  return `[[listen.http]]\n  port = ${port}\n  ip_address = "127.0.0.1"\n\n  [[listen.http.handlers.mongoose_prometheus_handler]]\n    host = "_"\n    path = "/metrics"\n\n`;
}

let bestEffort: Promise<string> | undefined;

/**
 * `  delivery = "best_effort"\n` when this build of Petrel has that handler
 * option (with it a failed notification is not retried, so failure counts
 * stay exact), else ''. Found out once, with `petrel check-config`.
 */
export function bestEffortLine(): Promise<string> {
  bestEffort ??= (async () => {
    const dir = await tempDir('petrel-probe-');
    const line = '  delivery = "best_effort"\n';
    const cfg =
      '[general]\n  hosts = ["localhost"]\n  data_dir = "data"\n[auth.internal]\n' +
      poolToml({ tag: 'http_pool', host: 'http://127.0.0.1:9' }) +
      handlersToml([{ path: '/probe' }], line);
    await writeFile(join(dir, 'petrel.toml'), cfg);
    const r = await runCli(['check-config', '-c', join(dir, 'petrel.toml')]);
    await rm(dir, { recursive: true, force: true });
    return r.code === 0 ? line : '';
  })();
  return bestEffort;
}

/** Copies fixture files (callback modules) next to a config file. */
export async function copyFixtures(dir: string, names: string[]): Promise<void> {
  await Promise.all(names.map((n) => copyFile(join(FIXTURES, n), join(dir, n))));
}

// ---------------------------------------------------------------- metrics

export async function scrape(port: number, path = '/metrics'): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET ${path} answered ${res.status}: ${text}`);
  return text;
}

/** The value of the sample `name{labels}` in Prometheus text (labels must all match), or undefined. */
export function sampleValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (m === null || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) got[l[1]!] = l[2]!;
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

/** Scrapes until `name{labels}` satisfies `ok`; returns its value. */
export async function waitForSample(port: number, name: string, labels: Record<string, string>, ok: (v: number) => boolean, timeoutMs = 10_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last: number | undefined;
  for (;;) {
    last = sampleValue(await scrape(port), name, labels);
    if (last !== undefined && ok(last)) return last;
    if (Date.now() > deadline) throw new Error(`${name}${JSON.stringify(labels)} is ${last} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The `one` and `count` of a spiral row of `petrel metrics`, e.g. row "[localhost, mod_event_pusher_http, failed]". */
export function spiralRow(table: string, host: string, metric: string): { one: number; count: number } | undefined {
  for (const line of table.split('\n')) {
    if (!line.startsWith(`[${host}, mod_event_pusher_http, ${metric}]`)) continue;
    const one = /one=(\d+)/.exec(line);
    const count = /count=(\d+)/.exec(line);
    if (one !== null && count !== null) return { one: Number(one[1]), count: Number(count[1]) };
  }
  return undefined;
}

// ---------------------------------------------------------------- certificates

/** A self-signed certificate for localhost with the subjectAltName HTTPS clients check (RFC 6125). */
export function makeLocalhostCert(dir: string, name = 'webhook'): Promise<{ certfile: string; keyfile: string }> {
  const certfile = join(dir, `${name}-cert.pem`);
  const keyfile = join(dir, `${name}-key.pem`);
  const args = ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost', '-days', '2', '-keyout', keyfile, '-out', certfile];
  return new Promise((resolve, reject) => {
    execFile('openssl', args, (err, _o, stderr) => (err ? reject(new Error(`openssl failed: ${stderr}`)) : resolve({ certfile, keyfile })));
  });
}

/** Waits until `cond()` holds, polling; for states that have no event to wait on. */
export async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Logs in and sends initial presence: a message to a bare JID is delivered
 * only to available resources (RFC 6121 §8.5.2.1.1), stored offline otherwise.
 */
export async function online(port: number, user: string, password: string, opts: ConnectOptions & { domain?: string } = {}): Promise<TestClient> {
  const c = await connect({ port, domain: opts.domain }, user, password, opts);
  try {
    await c.available();
  } catch (err) {
    await c.close();
    throw err;
  }
  return c;
}
