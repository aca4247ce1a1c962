// The client side of `petrel metrics`: asks the running server for its
// snapshot on the first [[listen.http]] listener of the config file.
import { request } from 'undici';
import type { PetrelConfig } from '../config/types.ts';
import { SNAPSHOT_PATH } from './http-listener.ts';
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

export function snapshotUrl(config: PetrelConfig): string {
  const l = config.listen.http[0];
  if (l === undefined) {
    throw new MetricsUnavailableError(
      `${config.configPath || 'the configuration'} has no [[listen.http]] listener; petrel metrics reads the running server through one. Add for example:\n\n` +
        '[[listen.http]]\n  port = 9091\n  ip_address = "127.0.0.1"\n\n  [[listen.http.handlers.mongoose_prometheus_handler]]\n    host = "_"\n    path = "/metrics"\n',
    );
  }
  return `http://${loopbackFor(l.ip_address)}:${l.port}${SNAPSHOT_PATH}`;
}

export async function fetchMetricsSnapshot(config: PetrelConfig, timeoutMs = 5000): Promise<MetricsSnapshot> {
  const url = snapshotUrl(config);
  let res;
  try {
    res = await request(url, { method: 'GET', headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  } catch (err) {
    throw new MetricsUnavailableError(`cannot reach the server at ${url} (is it running?): ${(err as Error).message}`);
  }
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new MetricsUnavailableError(`${url} answered ${res.statusCode}: ${text.trim()}`);
  return JSON.parse(text) as MetricsSnapshot;
}
