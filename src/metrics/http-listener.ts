// `[[listen.http]]` listeners. A `mongoose_prometheus_handler` entry serves
// the registry in the Prometheus text format at its `path` for its `host`
// ("_" answers whatever the Host header says, as in MongooseIM). Every
// listener also answers GET /_petrel/metrics.json, for `petrel metrics`, but
// only to clients on the loopback interface.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { HttpListenerConfig, PetrelConfig } from '../config/types.ts';
import { MetricsSampler, type MetricsSnapshot } from './snapshot.ts';

export const SNAPSHOT_PATH = '/_petrel/metrics.json';

export interface HttpListenersExtra {
  logger?: Logger;
  /** Source of the JSON snapshot; a sampler over `registry` is started when not given. */
  sampler?: MetricsSampler;
}

export interface HttpListeners {
  /** Bound addresses, in the order of the configuration (port 0 shows the chosen port). */
  addresses(): Array<{ address: string; port: number }>;
  readonly sampler: MetricsSampler;
  close(): Promise<void>;
}

/** 127.0.0.0/8, ::1 and IPv4-mapped loopback. */
export function isLoopback(addr: string | undefined): boolean {
  if (addr === undefined) return false;
  if (addr === '::1') return true;
  const v4 = addr.startsWith('::ffff:') ? addr.slice(7) : addr;
  return v4.startsWith('127.');
}

/** The Host header without its port (and without the brackets of an IPv6 literal). */
function hostName(header: string | undefined): string {
  if (header === undefined) return '';
  if (header.startsWith('[')) return header.slice(1, header.indexOf(']')).toLowerCase();
  const colon = header.indexOf(':');
  return (colon === -1 ? header : header.slice(0, colon)).toLowerCase();
}

function listenOne(cfg: HttpListenerConfig, registry: Registry, sampler: MetricsSampler, log: Logger | undefined): Promise<http.Server> {
  const handlers = cfg.handlers.mongoose_prometheus_handler.map((h) => ({ host: h.host.toLowerCase(), path: h.path }));
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return send(405, 'text/plain; charset=utf-8', 'method not allowed\n');
    }
    const serve = (p: Promise<string>, type: string) =>
      p.then(
        (body) => send(200, type, body),
        (err) => {
          log?.error({ what: 'metrics_render_failed', err: String(err) }, 'metrics could not be rendered');
          send(500, 'text/plain; charset=utf-8', 'metrics could not be rendered\n');
        },
      );
    if (path === SNAPSHOT_PATH) {
      if (!isLoopback(req.socket.remoteAddress)) return send(403, 'text/plain; charset=utf-8', 'only from the loopback interface\n');
      return void serve(sampler.snapshot().then((s: MetricsSnapshot) => JSON.stringify(s)), 'application/json');
    }
    const host = hostName(req.headers.host);
    for (const h of handlers) {
      if (h.path === path && (h.host === '_' || h.host === host)) return void serve(registry.metrics(), registry.contentType);
    }
    send(404, 'text/plain; charset=utf-8', 'not found\n');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(cfg.port, cfg.ip_address, () => {
      server.off('error', reject);
      server.on('error', (err) => log?.error({ what: 'http_listener_error', port: cfg.port, err: String(err) }, 'HTTP listener error'));
      resolve(server);
    });
  });
}

export async function startHttpListeners(
  listeners: PetrelConfig['listen']['http'],
  registry: Registry,
  extra: HttpListenersExtra = {},
): Promise<HttpListeners> {
  const sampler = extra.sampler ?? new MetricsSampler(registry);
  if (extra.sampler === undefined && listeners.length > 0) sampler.start();
  const servers: http.Server[] = [];
  try {
    for (const l of listeners) servers.push(await listenOne(l, registry, sampler, extra.logger));
  } catch (err) {
    sampler.stop();
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    throw err;
  }
  for (const s of servers) {
    const a = s.address() as AddressInfo;
    extra.logger?.info({ what: 'http_listener_started', address: a.address, port: a.port }, 'metrics listener started');
  }
  return {
    sampler,
    addresses: () =>
      servers.map((s) => {
        const a = s.address() as AddressInfo;
        return { address: a.address, port: a.port };
      }),
    async close() {
      if (extra.sampler === undefined) sampler.stop();
      await Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((r) => {
              s.close(() => r());
              s.closeAllConnections();
            }),
        ),
      );
    },
  };
}
