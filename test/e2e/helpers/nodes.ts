// Several Petrel processes on one PostgreSQL database: every store in
// PostgreSQL (accounts, rosters, offline messages, the event pusher's
// outbox), each process with its own directory, listener and data
// directory. Accounts registered through one node exist on all of them.
import { readFile, writeFile } from 'node:fs/promises';
import { connect as netConnect } from 'node:net';
import { preparePetrel, type Petrel, type PetrelOptions } from './server.ts';
import type { TestDatabase } from '../postgres/db.ts';

export interface NodeSetOptions {
  /** How many processes. */
  n: number;
  db: TestDatabase;
  /** More TOML for node i (0-based), appended after the rdbms pool. */
  extraToml?: (i: number) => string;
  hosts?: PetrelOptions['hosts'];
  /** Makes the nodes one cluster (general.sm_backend = "cets", discovery in the same database, NATS at `bus`). */
  cluster?: ClusterOptions;
}

export interface ClusterOptions {
  /** internal_databases.cets.cluster_name: unique per test file, so that parallel tests never meet. */
  name: string;
  bus?: string;
  heartbeat_interval?: number;
  heartbeat_timeout?: number;
  request_timeout?: number;
}

export const NATS_URL = 'nats://127.0.0.1:4222';
export const NATS_UNREACHABLE = 'NATS is not reachable at 127.0.0.1:4222';

/** False unless something accepts a TCP connection on NATS's port within 2 s. */
export function natsReachable(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ host: '127.0.0.1', port: 4222 });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(2000, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** The TOML that makes node i a member of the cluster. */
export function clusterToml(i: number, c: ClusterOptions): string {
  let t = `[internal_databases.cets]\n  backend = "rdbms"\n  cluster_name = "${c.name}"\n\n[cluster]\n  bus = "${c.bus ?? NATS_URL}"\n  node_name = "node${i}"\n`;
  for (const k of ['heartbeat_interval', 'heartbeat_timeout', 'request_timeout'] as const) if (c[k] !== undefined) t += `  ${k} = ${c[k]}\n`;
  return t;
}

/** Points the harness's embedded-store sections at PostgreSQL. */
async function useRdbms(p: Petrel, cets: boolean): Promise<void> {
  let toml = (await readFile(p.configPath, 'utf8'))
    .replace('[auth.internal]', '[auth.rdbms]')
    .replace('[modules.mod_roster]\n', '[modules.mod_roster]\n  backend = "rdbms"\n')
    .replace('[modules.mod_offline]\n', '[modules.mod_offline]\n  backend = "rdbms"\n');
  if (cets) toml = toml.replace('  data_dir = "data"\n', '  data_dir = "data"\n  sm_backend = "cets"\n');
  await writeFile(p.configPath, toml);
}

/** Writes the nodes' configs (not started). */
export async function prepareNodes(o: NodeSetOptions): Promise<Petrel[]> {
  const nodes: Petrel[] = [];
  for (let i = 0; i < o.n; i++) {
    const cluster = o.cluster === undefined ? '' : clusterToml(i, o.cluster);
    const p = await preparePetrel({ hosts: o.hosts, extraToml: `${o.db.toml}\n${cluster}\n${o.extraToml?.(i) ?? ''}` });
    await useRdbms(p, o.cluster !== undefined);
    nodes.push(p);
  }
  return nodes;
}

/** Registers accounts through the first node's command-line tool (they land in the shared database). */
export async function registerAll(nodes: Petrel[], users: Array<[string, string]>): Promise<void> {
  const [first, ...rest] = users;
  if (first !== undefined) await nodes[0]!.register(first[0], first[1]);
  // A few at a time: each is a process doing a SCRAM derivation.
  for (let i = 0; i < rest.length; i += 4) await Promise.all(rest.slice(i, i + 4).map(([u, pw]) => nodes[0]!.register(u, pw)));
}

/** Starts every node, side by side (schema migrations take a lock). */
export async function startNodes(nodes: Petrel[]): Promise<void> {
  await Promise.all(nodes.map((p) => p.start()));
}

/** Stops the nodes that still run and removes their directories; the first error, if any, after all are done. */
export async function disposeNodes(nodes: Petrel[]): Promise<void> {
  const results = await Promise.allSettled(nodes.map((p) => p.dispose()));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}
