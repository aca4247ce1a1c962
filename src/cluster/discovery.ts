// Node discovery in PostgreSQL (general.sm_backend = "cets" with
// [internal_databases.cets] backend = "rdbms"): each node keeps a row of
// petrel_cluster_nodes up to date (its heartbeat); a row older than
// cluster.heartbeat_timeout is a dead node. Whoever deletes a dead row
// (DELETE ... RETURNING: one statement, so exactly one node gets the row)
// cleans up after it. Every time is the database's own clock, so the nodes'
// clocks need not agree.
import type pg from 'pg';

export interface NodeRow {
  cluster_name: string;
  node_name: string;
  /** Random per start: a node restarted under the same name is another incarnation. */
  incarnation: string;
  address: string;
  started_at: Date;
  heartbeat_at: Date;
  /** The heartbeat is younger than heartbeat_timeout. */
  live: boolean;
}

/** One row per node incarnation: a node restarted before its old row timed out leaves that row to die as any other. */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS petrel_cluster_nodes (
  cluster_name text NOT NULL,
  node_name text NOT NULL,
  incarnation text NOT NULL,
  address text NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (cluster_name, node_name, incarnation)
)`;

/** A fixed key: nodes creating the table at once wait for each other instead of failing. */
const SCHEMA_LOCK = 7_400_712_311;

export async function ensureNodeTable(pool: pg.Pool): Promise<void> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    await c.query('SELECT pg_advisory_xact_lock($1)', [SCHEMA_LOCK]);
    await c.query(SCHEMA);
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    c.release();
  }
}

/** Every row of a cluster, oldest node first; `live` against `timeoutMs`. */
export async function listNodes(pool: pg.Pool, cluster: string, timeoutMs: number): Promise<NodeRow[]> {
  const r = await pool.query<NodeRow>(
    `SELECT cluster_name, node_name, incarnation, address, started_at, heartbeat_at,
            heartbeat_at > now() - make_interval(secs => $2::float8 / 1000) AS live
       FROM petrel_cluster_nodes WHERE cluster_name = $1 ORDER BY started_at, node_name`,
    [cluster, timeoutMs],
  );
  return r.rows;
}

export interface DiscoveryOptions {
  pool: pg.Pool;
  cluster: string;
  node: string;
  incarnation: string;
  address: string;
  timeoutMs: number;
}

export class Discovery {
  #o: DiscoveryOptions;

  constructor(o: DiscoveryOptions) {
    this.#o = o;
  }

  async join(): Promise<void> {
    await ensureNodeTable(this.#o.pool);
    await this.#insert();
  }

  #insert(): Promise<unknown> {
    const o = this.#o;
    return o.pool.query(
      `INSERT INTO petrel_cluster_nodes (cluster_name, node_name, incarnation, address) VALUES ($1, $2, $3, $4)
       ON CONFLICT (cluster_name, node_name, incarnation) DO UPDATE SET heartbeat_at = now()`,
      [o.cluster, o.node, o.incarnation, o.address],
    );
  }

  /**
   * One heartbeat: this node's row is refreshed (put back if another node
   * took it for dead), the rows that timed out are deleted, and the live
   * rows are read. `won`: the dead rows this node deleted, whose cleanup is
   * its alone; `rejoined`: this node's row had been deleted.
   */
  async beat(): Promise<{ live: NodeRow[]; won: Array<{ node_name: string; incarnation: string }>; rejoined: boolean }> {
    const o = this.#o;
    const u = await o.pool.query(
      'UPDATE petrel_cluster_nodes SET heartbeat_at = now() WHERE cluster_name = $1 AND node_name = $2 AND incarnation = $3',
      [o.cluster, o.node, o.incarnation],
    );
    const rejoined = u.rowCount === 0;
    if (rejoined) await this.#insert();
    const d = await o.pool.query<{ node_name: string; incarnation: string }>(
      `DELETE FROM petrel_cluster_nodes
        WHERE cluster_name = $1 AND heartbeat_at < now() - make_interval(secs => $2::float8 / 1000)
          AND NOT (node_name = $3 AND incarnation = $4)
        RETURNING node_name, incarnation`,
      [o.cluster, o.timeoutMs, o.node, o.incarnation],
    );
    const live = (await listNodes(o.pool, o.cluster, o.timeoutMs)).filter((r) => r.live);
    return { live, won: d.rows, rejoined };
  }

  /** A clean stop: the row goes, so that nobody waits for its timeout. */
  async leave(): Promise<void> {
    const o = this.#o;
    await o.pool.query('DELETE FROM petrel_cluster_nodes WHERE cluster_name = $1 AND node_name = $2 AND incarnation = $3', [o.cluster, o.node, o.incarnation]);
  }
}
