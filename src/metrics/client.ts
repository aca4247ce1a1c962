// The client side of `petrel metrics`: asks the running server for its
// snapshot through a [[listen.http]] listener of the config file (every one
// serves it to loopback clients): the first plaintext one, else the first
// HTTPS one.
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { Agent, request } from 'undici';
import type { PetrelConfig } from '../config/types.ts';
import { httpListenersOf } from '../http/config.ts';
import type { HttpListenerConfig } from '../http/types.ts';
import { SNAPSHOT_PATH } from './prometheus.ts';
import type { MetricsSnapshot } from './snapshot.ts';

export class MetricsUnavailableError extends Error {
  readonly code = 'metrics_unavailable' as const;
}

/** A listener bound to every address is reached on loopback. */
function loopbackFor(ip: string): string {
  if (ip === '0.0.0.0' || ip === '') return '127.0.0.1';
  if (ip === '::') return '[::1]';
  return ip.includes(':') ? `[${ip}]` : ip;
}

/** The listener `petrel metrics` reads through, or an error saying what to configure. */
export function snapshotListener(config: PetrelConfig): HttpListenerConfig {
  const all = httpListenersOf(config);
  const l = all.find((x) => x.tls === undefined) ?? all[0];
  if (l === undefined) {
    throw new MetricsUnavailableError(
      `${config.configPath || 'the configuration'} has no [[listen.http]] listener; petrel metrics reads the running server through one. Add for example:\n\n` +
        '[[listen.http]]\n  port = 9091\n  ip_address = "127.0.0.1"\n\n  [[listen.http.handlers.mongoose_prometheus_handler]]\n    host = "_"\n    path = "/metrics"\n',
    );
  }
  return l;
}

export function snapshotUrl(config: PetrelConfig): string {
  const l = snapshotListener(config);
  return `${l.tls === undefined ? 'http' : 'https'}://${loopbackFor(l.ip_address)}:${l.port}${SNAPSHOT_PATH}`;
}

/**
 * Over HTTPS the server is reached by address, which its certificate need
 * not name: it is trusted when it presents the certificate the
 * configuration gives it (or one the system's or cacertfile's CAs vouch for).
 */
function httpsAgent(l: HttpListenerConfig): Agent | undefined {
  if (l.tls === undefined) return undefined;
  const ca = [...rootCertificates, readFileSync(l.tls.certfile, 'utf8')];
  if (l.tls.cacertfile !== undefined) ca.push(readFileSync(l.tls.cacertfile, 'utf8'));
  return new Agent({ connect: { ca, checkServerIdentity: () => undefined } });
}

export async function fetchMetricsSnapshot(config: PetrelConfig, timeoutMs = 5000): Promise<MetricsSnapshot> {
  const url = snapshotUrl(config);
  const dispatcher = httpsAgent(snapshotListener(config));
  try {
    let res;
    try {
      res = await request(url, { method: 'GET', headersTimeout: timeoutMs, bodyTimeout: timeoutMs, dispatcher });
    } catch (err) {
      throw new MetricsUnavailableError(`cannot reach the server at ${url} (is it running?): ${(err as Error).message}`);
    }
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new MetricsUnavailableError(`${url} answered ${res.statusCode}: ${text.trim()}`);
    return JSON.parse(text) as MetricsSnapshot;
  } finally {
    await dispatcher?.close();
  }
}
