// A webhook receiver for delivery tests: a real node:http listener on a fixed
// loopback port that can be taken down (connections refused) and brought
// back, answering each path with a scripted status, and keeping every
// request it got.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { DatabaseSync } from 'node:sqlite';
import { join } from 'node:path';
import type { Petrel } from '../helpers/server.ts';

export interface Received {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** performance.now() when the request was complete. */
  at: number;
  /** The status it was answered with. */
  status: number;
}

export interface Answer {
  status: number;
  headers?: Record<string, string>;
}

/** Decides the answer to a request; `n` counts the earlier requests with the same path and body (attempts of one event). */
export type Script = (req: { path: string; headers: http.IncomingHttpHeaders; body: string; n: number }) => Answer;

export class Webhook {
  readonly received: Received[] = [];
  port = 0;
  #server: http.Server;
  #scripts = new Map<string, Script>();
  #counts = new Map<string, number>();
  #waiters: Array<() => void> = [];

  constructor() {
    this.#server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const path = req.url ?? '/';
        const body = Buffer.concat(chunks).toString('utf8');
        const key = path + '\n' + body;
        const n = this.#counts.get(key) ?? 0;
        this.#counts.set(key, n + 1);
        const script = this.#scripts.get(path);
        const a = script ? script({ path, headers: req.headers, body, n }) : { status: 200 };
        this.received.push({ path, headers: req.headers, body, at: performance.now(), status: a.status });
        res.writeHead(a.status, a.headers);
        res.end('ok');
        const w = this.#waiters;
        this.#waiters = [];
        for (const f of w) f();
      });
    });
    this.#server.keepAliveTimeout = 60_000;
  }

  /** How `path` is answered (200 when not scripted). */
  script(path: string, s: Script): void {
    this.#scripts.set(path, s);
  }

  async up(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.port, '127.0.0.1', () => {
        this.#server.off('error', reject);
        this.port = (this.#server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  /** Stops listening and drops every open connection: new attempts are refused. */
  async down(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }

  on(path: string): Received[] {
    return this.received.filter((r) => r.path === path);
  }

  /** Resolves once `pred` holds over what was received (checked at each request). */
  until(pred: () => boolean, timeoutMs = 15_000, what = 'the expected requests'): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`webhook: no ${what} within ${timeoutMs} ms (${this.received.length} requests so far)`)), timeoutMs);
      const check = () => {
        if (pred()) {
          clearTimeout(timer);
          resolve();
        } else this.#waiters.push(check);
      };
      check();
    });
  }
}

/** The webhook-id of a request. */
export function idOf(r: Received): string {
  return String(r.headers['webhook-id']);
}

/** The server's pid, from its server_started log line. */
export function pidOf(p: Petrel): number {
  const started = [...p.logs].reverse().find((l) => l.what === 'server_started');
  if (started === undefined || typeof started.pid !== 'number') throw new Error('no server_started line with a pid');
  return started.pid;
}

/** Kills the server with SIGKILL (no shutdown at all) and waits until it is gone. */
export async function killHard(p: Petrel): Promise<void> {
  process.kill(pidOf(p), 'SIGKILL');
  const t0 = Date.now();
  while (p.running) {
    if (Date.now() - t0 > 10_000) throw new Error('the server did not die');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Restarts a server in the same directory, forgetting the previous run's log lines. */
export async function restart(p: Petrel): Promise<void> {
  p.logs.length = 0;
  await p.start();
}

/** Opens the server's store file read-only, for checks on the outbox tables. */
export function openStore(p: Petrel): DatabaseSync {
  return new DatabaseSync(join(p.dir, 'data', 'petrel.sqlite'), { readOnly: true });
}

/** TOML of one pool to the webhook. */
export function poolToml(tag: string, port: number, o: { workers?: number; prefix?: string; timeout?: number } = {}): string {
  return `[outgoing_pools.http.${tag}]
  workers = ${o.workers ?? 10}
  [outgoing_pools.http.${tag}.connection]
    host = "http://127.0.0.1:${port}"
    path_prefix = "${o.prefix ?? '/'}"
    request_timeout = ${o.timeout ?? 2000}
`;
}
