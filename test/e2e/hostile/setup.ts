// A Petrel process for the hostile-client tests: the shared harness runs it,
// this file writes a config with the limits each test wants (short timeouts,
// small buffers) so that every limit is reached within a second or two.
import { after, before } from 'node:test';
import { writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Petrel, freePort, tempDir } from '../helpers/server.ts';
import { RawConnection } from '../helpers/raw.ts';

export type TomlValue = string | number | boolean;

export interface HostileOptions {
  /** Keys of the c2s listener table. */
  listener?: Record<string, TomlValue>;
  /** A [listen.c2s.tls] table. */
  tls?: Record<string, TomlValue>;
  /** Keys of [general]. */
  general?: Record<string, TomlValue>;
  /** [modules.mod_offline] max_messages. */
  offlineMax?: number;
  /** Other keys of [modules.mod_offline]. */
  offline?: Record<string, TomlValue>;
  /** Defines [shaper.normal] with this max_rate; the listener uses it. */
  shaperRate?: number;
  users?: Array<[string, string]>;
  /** An absolute data_dir (default: "data" beside the config). */
  dataDir?: string;
  /** Serves the Prometheus metrics at http://127.0.0.1:<metricsPort>/metrics. */
  metricsPort?: number;
  /** Keys of [modules.mod_ping]. */
  ping?: Record<string, TomlValue>;
  /** Keys of [modules.mod_roster]. */
  roster?: Record<string, TomlValue>;
  /** More TOML (other modules, an [outgoing_pools.rdbms.default] pool), appended as is. */
  extraToml?: string;
}

function toml(v: TomlValue): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

function keys(o: Record<string, TomlValue> | undefined, indent: string): string {
  return Object.entries(o ?? {}).map(([k, v]) => `${indent}${k} = ${toml(v)}\n`).join('');
}

export async function startHostile(o: HostileOptions = {}): Promise<Petrel> {
  const dir = await tempDir('petrel-hostile-');
  const port = await freePort();
  let t = `[general]\n  hosts = ["localhost"]\n  loglevel = "info"\n  data_dir = ${JSON.stringify(o.dataDir ?? 'data')}\n${keys(o.general, '  ')}\n`;
  t += `[[listen.c2s]]\n  port = ${port}\n  ip_address = "127.0.0.1"\n${keys(o.listener, '  ')}`;
  if (o.shaperRate !== undefined) t += '  shaper = "normal"\n';
  if (o.tls !== undefined) t += `  [listen.c2s.tls]\n${keys(o.tls, '    ')}`;
  t += '\n[auth]\n  [auth.password]\n    format = "scram"\n    scram_iterations = 4096\n  [auth.internal]\n\n';
  t += `[modules.mod_roster]\n${keys(o.roster, '  ')}[modules.mod_disco]\n[modules.mod_ping]\n${keys(o.ping, '  ')}`;
  t += o.offlineMax === undefined ? '[modules.mod_offline]\n' : `[modules.mod_offline]\n  max_messages = ${o.offlineMax}\n`;
  t += keys(o.offline, '  ');
  if (o.shaperRate !== undefined) t += `\n[shaper.normal]\n  max_rate = ${o.shaperRate}\n`;
  if (o.metricsPort !== undefined) {
    t += `\n[[listen.http]]\n  port = ${o.metricsPort}\n  ip_address = "127.0.0.1"\n  [[listen.http.handlers.mongoose_prometheus_handler]]\n    host = "_"\n    path = "/metrics"\n`;
  }
  if (o.extraToml !== undefined) t += '\n' + o.extraToml + '\n';
  const configPath = join(dir, 'petrel.toml');
  await writeFile(configPath, t);
  const p = new Petrel(dir, configPath, [port], 'localhost');
  try {
    await Promise.all((o.users ?? []).map(([u, pw]) => p.register(u, pw)));
    await p.start();
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return p;
}

/** Waits until the server closes `raw`; the text it sent, with a bounded wait. */
export function closedWith(raw: RawConnection, timeoutMs = 5000): Promise<string> {
  return raw.untilClosed(timeoutMs);
}

/** A fresh login works: the server is still up and serving. */
export async function stillServes(server: Petrel, user: string, password: string): Promise<void> {
  const raw = await RawConnection.open(server.port);
  try {
    await raw.login(user, password, 'probe-' + Math.random().toString(36).slice(2, 8));
    raw.send("<iq type='get' id='alive' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    await raw.waitFor(/id=["']alive["']/, 5000);
  } finally {
    raw.destroy();
  }
}

/** Resolves when `raw` can take more writes, or when it has closed (so a writer never waits forever). */
export function drainOrClose(raw: RawConnection): Promise<void> {
  const socket = raw.socket;
  if (socket.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.once('drain', done);
    socket.once('close', done);
  });
}

/** The stream header a client sends, with `to` = localhost. */
export { streamHeader, streamErrorCondition, NS_SASL, NS_BIND, NS_TLS, RawConnection } from '../helpers/raw.ts';

/**
 * A hostile-test server for the tests of one describe block (or file):
 * started before them, stopped after. Read `.server` inside the tests.
 */
export function hostileServerFor(o: HostileOptions): { readonly server: Petrel } {
  const box = { server: undefined as unknown as Petrel };
  before(async () => {
    box.server = await startHostile(o);
  });
  after(async () => {
    await box.server?.dispose();
  });
  return box;
}

