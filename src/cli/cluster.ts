// `petrel cluster`: the nodes of the cluster a configuration belongs to, as
// the node table in PostgreSQL has them (general.sm_backend = "cets").
import type { PetrelConfig } from '../config/types.ts';
import { openPgPool } from '../storage/postgres.ts';
import { ensureNodeTable, listNodes } from '../cluster/discovery.ts';

export class ClusterUsageError extends Error {}

/** The table's lines: node, address, started, last heartbeat, live or dead. */
export async function clusterTable(config: PetrelConfig): Promise<string> {
  if (config.general.sm_backend !== 'cets') throw new ClusterUsageError('this configuration is a single node: general.sm_backend is not "cets"');
  const cets = config.internal_databases!.cets!;
  const pool = await openPgPool(config.outgoing_pools.rdbms!.default!, { max: 1, applicationName: 'petrel cluster' });
  try {
    await ensureNodeTable(pool);
    const rows = await listNodes(pool, cets.cluster_name, config.cluster!.heartbeat_timeout);
    const now = Date.now();
    const lines = [['NODE', 'ADDRESS', 'STARTED', 'LAST HEARTBEAT', 'STATE']];
    for (const r of rows) {
      const ago = Math.max(0, now - r.heartbeat_at.getTime());
      lines.push([r.node_name, r.address, r.started_at.toISOString(), `${r.heartbeat_at.toISOString()} (${(ago / 1000).toFixed(1)} s ago)`, r.live ? 'live' : 'dead']);
    }
    const widths = lines[0]!.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
    const text = lines.map((l) => l.map((c, i) => (i === l.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
    return `cluster ${cets.cluster_name}: ${rows.filter((r) => r.live).length} live node(s)\n${text}`;
  } finally {
    await pool.end();
  }
}
