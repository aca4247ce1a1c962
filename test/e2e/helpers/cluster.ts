// Several Petrel nodes forming one cluster for end-to-end tests
// (general.sm_backend = "cets"): each node its own directory, data
// directory and ports; all on one PostgreSQL database (accounts, rosters,
// offline messages and the node table) and the machine's NATS server, under
// a cluster_name of their own so that parallel tests never meet.
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { connect as tcpConnect } from 'node:net';
import { preparePetrel, type Petrel, type PetrelOptions } from './server.ts';
import { killHard } from '../delivery/helpers.ts';
import { after, before } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../postgres/db.ts';
import { connect, isMessage, xml, type ConnectOptions, type TestClient } from './client.ts';

export const NATS_URL = 'nats://127.0.0.1:4222';
export const NATS_UNREACHABLE = `NATS is not reachable at ${NATS_URL}`;

/** False unless something accepts connections on NATS's port within 2 s. */
export function natsReachable(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect(4222, '127.0.0.1');
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(2000, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

export interface ClusterOptions {
  /** Nodes to start. */
  nodes: number;
  db: TestDatabase;
  /** ms; short in tests so that a dead node is found soon. */
  heartbeatInterval?: number;
  heartbeatTimeout?: number;
  requestTimeout?: number;
  /** More TOML for every node (modules...), appended as is. */
  extraToml?: string;
  /** Lines added to every node's [general] section. */
  general?: string;
  /** Nodes started by startTestCluster (default: all); start the others with node(i).start(). */
  startNow?: number;
  /** More TOML for node `i` (0-based) alone. */
  extraTomlFor?: (i: number) => string | Promise<string>;
  /** Options of the test server helper, for every node. */
  petrel?: Omit<PetrelOptions, 'extraToml' | 'users'>;
}

/** A node's TOML: the test server's with every store in PostgreSQL and the cluster's sections. */
export function clusterToml(base: string, o: { db: TestDatabase; clusterName: string; nodeName: string; interval: number; timeout: number; request: number; general?: string }): string {
  return base
    .replace(/(data_dir = "data"\n)/, `$1  sm_backend = "cets"\n${o.general === undefined ? '' : o.general.replace(/^/gm, '  ') + '\n'}`)
    .replace('[auth.internal]', '[auth.rdbms]')
    .replace('[modules.mod_roster]\n', '[modules.mod_roster]\n  backend = "rdbms"\n')
    .replace('[modules.mod_offline]\n', '[modules.mod_offline]\n  backend = "rdbms"\n') +
    `\n${o.db.toml}\n[internal_databases.cets]\n  backend = "rdbms"\n  cluster_name = "${o.clusterName}"\n\n` +
    `[cluster]\n  bus = "${NATS_URL}"\n  node_name = "${o.nodeName}"\n  heartbeat_interval = ${o.interval}\n  heartbeat_timeout = ${o.timeout}\n  request_timeout = ${o.request}\n`;
}

export class TestCluster {
  readonly clusterName: string;
  readonly nodes: Petrel[];

  constructor(clusterName: string, nodes: Petrel[]) {
    this.clusterName = clusterName;
    this.nodes = nodes;
  }

  node(i: number): Petrel {
    return this.nodes[i]!;
  }

  /** Accounts live in PostgreSQL: registering through one node's tool makes them for all. */
  async register(users: Array<[string, string]>): Promise<void> {
    for (const [u, pw] of users) await this.nodes[0]!.register(u, pw);
  }

  /** Waits until `node` logs that it sees `count` live nodes (its petrel_cluster_nodes gauge). */
  async waitForNodes(i: number, count: number, timeoutMs = 15_000): Promise<void> {
    const t0 = Date.now();
    for (;;) {
      const r = await this.nodes[i]!.cli(['cluster']);
      const live = /: (\d+) live node/.exec(r.stdout);
      if (live !== null && Number(live[1]) >= count) return;
      if (Date.now() - t0 > timeoutMs) throw new Error(`node ${i} does not see ${count} live nodes: ${r.stdout}${r.stderr}`);
      await new Promise((res) => setTimeout(res, 100));
    }
  }

  /** SIGKILL: no goodbye, the others find out from the heartbeat. */
  kill(i: number): Promise<void> {
    return killHard(this.nodes[i]!);
  }

  async dispose(): Promise<void> {
    await Promise.allSettled(this.nodes.map((n) => (n.running ? n.dispose() : n.dispose().catch(() => {}))));
  }
}

/** Prepares and starts the nodes (one after another, so each finds the ones before it). */
export async function startTestCluster(o: ClusterOptions): Promise<TestCluster> {
  const clusterName = `t_${randomBytes(5).toString('hex')}`;
  const nodes: Petrel[] = [];
  const cluster = new TestCluster(clusterName, nodes);
  try {
    for (let i = 0; i < o.nodes; i++) {
      const p = await preparePetrel({ ...o.petrel });
      const base = await readFile(p.configPath, 'utf8');
      await writeFile(
        p.configPath,
        clusterToml(base, {
          db: o.db, clusterName, nodeName: `node${i + 1}`,
          interval: o.heartbeatInterval ?? 200, timeout: o.heartbeatTimeout ?? 1500, request: o.requestTimeout ?? 1000, general: o.general,
        }) + (o.extraToml === undefined ? '' : `\n${o.extraToml}\n`) + (o.extraTomlFor === undefined ? '' : `\n${await o.extraTomlFor(i)}\n`),
      );
      nodes.push(p);
    }
    for (const p of nodes.slice(0, o.startNow ?? nodes.length)) await p.start();
  } catch (err) {
    await cluster.dispose();
    throw err;
  }
  return cluster;
}

/**
 * The cluster of one describe block: before its tests, a database of its
 * own, the nodes, the accounts (password `pw-<user>`) and every node seeing
 * all the others; after them, the clients in `clients` (those of `login`
 * among them), the nodes and the database go.
 */
export function clusterSuite(o: Omit<ClusterOptions, 'db'>, users: string[]): {
  readonly cluster: TestCluster;
  readonly db: TestDatabase;
  readonly clients: TestClient[];
  login(node: number, user: string, opts?: ConnectOptions): Promise<TestClient>;
} {
  let db: TestDatabase | undefined;
  let cluster: TestCluster | undefined;
  const clients: TestClient[] = [];
  before(async () => {
    db = await createTestDatabase();
    cluster = await startTestCluster({ ...o, db });
    await cluster.register(users.map((u) => [u, `pw-${u}`]));
    for (let i = 0; i < (o.startNow ?? o.nodes); i++) await cluster.waitForNodes(i, o.startNow ?? o.nodes);
  });
  after(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await cluster?.dispose();
    await db?.drop();
  });
  return {
    get cluster() {
      return cluster!;
    },
    get db() {
      return db!;
    },
    clients,
    async login(node, user, opts) {
      const c = await connect(cluster!.node(node), user, `pw-${user}`, opts);
      clients.push(c);
      return c;
    },
  };
}

/**
 * Waits until the nodes of two clients have each other's session in their
 * tables: `target` sends `viewer` headlines until one arrives (a headline
 * for a session its node does not know yet is dropped, never stored). The
 * target's node published its session before it forwarded the headline,
 * and the bus keeps that order, so the viewer's node knows the target's
 * session too.
 */
export async function seen(viewer: TestClient, target: TestClient): Promise<void> {
  for (let i = 0; ; i++) {
    const id = `seen-${i}-${Math.random().toString(36).slice(2)}`;
    const got = viewer.waitFor(isMessage(id), 1000).then(() => true, () => false);
    await target.send(xml('message', { to: viewer.jid, type: 'headline', id }, xml('body', {}, 'are you there?')));
    if (await got) return;
    if (i >= 20) throw new Error(`${viewer.jid} never got a headline from ${target.jid}`);
  }
}
