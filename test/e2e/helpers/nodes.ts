// Several Petrel processes on one PostgreSQL database: every store in
// PostgreSQL (accounts, rosters, offline messages, the event pusher's
// outbox), each process with its own directory, listener and data
// directory. Accounts registered through one node exist on all of them.
import { readFile, writeFile } from 'node:fs/promises';
import { preparePetrel, type Petrel, type PetrelOptions } from './server.ts';
import type { TestDatabase } from '../postgres/db.ts';

export interface NodeSetOptions {
  /** How many processes. */
  n: number;
  db: TestDatabase;
  /** More TOML for node i (0-based), appended after the rdbms pool. */
  extraToml?: (i: number) => string;
  hosts?: PetrelOptions['hosts'];
}

/** Points the harness's embedded-store sections at PostgreSQL. */
async function useRdbms(p: Petrel): Promise<void> {
  const toml = (await readFile(p.configPath, 'utf8'))
    .replace('[auth.internal]', '[auth.rdbms]')
    .replace('[modules.mod_roster]\n', '[modules.mod_roster]\n  backend = "rdbms"\n')
    .replace('[modules.mod_offline]\n', '[modules.mod_offline]\n  backend = "rdbms"\n');
  await writeFile(p.configPath, toml);
}

/** Writes the nodes' configs (not started). */
export async function prepareNodes(o: NodeSetOptions): Promise<Petrel[]> {
  const nodes: Petrel[] = [];
  for (let i = 0; i < o.n; i++) {
    const p = await preparePetrel({ hosts: o.hosts, extraToml: `${o.db.toml}\n${o.extraToml?.(i) ?? ''}` });
    await useRdbms(p);
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
