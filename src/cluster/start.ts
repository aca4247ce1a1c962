// Joining the cluster at start (general.sm_backend = "cets"): the NATS bus,
// the node table in PostgreSQL, the replicated session table.
import { createHash, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { PetrelConfig } from '../config/types.ts';
import { openPgPool } from '../storage/postgres.ts';
import type { Hooks } from '../hooks/hooks.ts';
import type { Router } from '../routing/router.ts';
import type { Presence } from '../routing/presence.ts';
import type { SessionManager } from '../routing/sm.ts';
import { Bus } from './bus.ts';
import { Discovery } from './discovery.ts';
import { ClusterSessions, type ClusterMetrics } from './sessions.ts';

/** cluster.node_name's default: the host name and a hash of the data directory, stable across restarts. */
export function defaultNodeName(dataDir: string): string {
  const host = hostname().replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 40) || 'node';
  return `${host}-${createHash('sha256').update(dataDir).digest('hex').slice(0, 8)}`;
}

/** cluster.advertised_address's default: the first c2s listener's address. */
export function defaultAddress(config: PetrelConfig): string {
  const l = config.listen.c2s[0];
  return l === undefined ? hostname() : `${l.ip_address}:${l.port}`;
}

export interface RunningCluster {
  node: string;
  sessions: ClusterSessions;
  stop(): Promise<void>;
}

export async function startCluster(
  config: PetrelConfig,
  deps: { sm: SessionManager; router: Router; presence: Presence; hooks: Hooks; logger: Logger; metrics: ClusterMetrics },
): Promise<RunningCluster> {
  const c = config.cluster!;
  const cets = config.internal_databases!.cets!;
  const node = c.node_name ?? defaultNodeName(config.general.data_dir);
  const incarnation = randomUUID();
  const pool = await openPgPool(config.outgoing_pools.rdbms!.default!, {
    max: 2,
    applicationName: `petrel cluster ${node}`,
    onWarning: (what, message) => deps.logger.warn({ what }, message),
  });
  let bus: Bus;
  try {
    bus = await Bus.open(c.bus!, cets.cluster_name, node, deps.logger);
  } catch (err) {
    await pool.end();
    throw new Error(`cluster.bus: cannot connect to ${c.bus}: ${(err as Error).message}`);
  }
  const discovery = new Discovery({ pool, cluster: cets.cluster_name, node, incarnation, address: c.advertised_address ?? defaultAddress(config), timeoutMs: c.heartbeat_timeout });
  const sessions = new ClusterSessions({
    bus, discovery, sm: deps.sm, router: deps.router, presence: deps.presence, hooks: deps.hooks, logger: deps.logger, metrics: deps.metrics,
    incarnation, requestTimeout: c.request_timeout, deliveryBatch: c.delivery_batch_size, keepMax: c.delivery_keep_max, keepBytes: c.delivery_keep_bytes, heartbeatInterval: c.heartbeat_interval,
  });
  try {
    await sessions.start();
  } catch (err) {
    await bus.close();
    await pool.end();
    throw err;
  }
  // Accounts and module data kept in a node's own SQLite file are that node's alone.
  const local = [
    ...(config.auth.methods.includes('rdbms') ? [] : ['auth.methods']),
    ...Object.entries(config.modules)
      .filter(([, o]) => typeof o === 'object' && o !== null && (o as { backend?: unknown }).backend !== undefined && !['rdbms'].includes(String((o as { backend?: unknown }).backend)))
      .map(([name]) => `modules.${name}.backend`),
  ];
  if (local.length > 0) {
    deps.logger.warn({ what: 'cluster_store_not_shared', options: local }, 'these stores are this node\'s own, not shared with the cluster: set them to "rdbms"');
  }
  deps.logger.info({ what: 'cluster_started', node, incarnation, cluster: cets.cluster_name, nodes: sessions.liveNodes }, 'this node joined the cluster');
  return {
    node,
    sessions,
    async stop() {
      await sessions.stop();
      await bus.close();
      await pool.end();
    },
  };
}
