// The cluster's configuration: MongooseIM's [internal_databases] (node
// discovery, "cets") beside general.sm_backend, and Petrel's own [cluster]
// section (the NATS bus and the timings). A node with none of this behaves
// as a single server: general.sm_backend = "mnesia" (the default) is the
// local session table.
import { ConfigError, ErrorCollector, custom, describe, fail, int, section, str, type SectionSpec } from './schema.ts';
import type { ClusterConfig, InternalDatabasesConfig, PetrelConfig } from './types.ts';

/** A NATS subject token: node names appear in subjects (petrel.<cluster>.node.<node>.<verb>). */
const NAME = /^[A-Za-z0-9_-]{1,64}$/;

function subjectToken(what: string) {
  return (v: string): string | undefined => (NAME.test(v) ? undefined : `${what} is 1 to 64 letters, digits, "_" or "-" (it is part of NATS subjects), got ${JSON.stringify(v)}`);
}

export const internalDatabasesSpec: SectionSpec = section({
  // MongooseIM's local Mnesia: for Petrel the local session table, which needs nothing.
  mnesia: section({}),
  cets: section(
    {
      backend: str({ oneOf: ['rdbms', 'file'], default: 'rdbms' }),
      cluster_name: str({ default: 'mongooseim', check: subjectToken('a cluster name') }),
      node_list_file: str(),
    },
    {
      default: false,
      process(v: { backend: string; cluster_name: string; node_list_file?: string }, p) {
        if (v.backend === 'file') fail(`${p}.backend`, 'only "rdbms" is supported: nodes find each other in the PostgreSQL pool [outgoing_pools.rdbms.default]');
        if (v.node_list_file !== undefined) fail(`${p}.node_list_file`, 'only the "rdbms" backend is supported, which reads no node list file');
        return { backend: 'rdbms', cluster_name: v.cluster_name };
      },
    },
  ),
});

const busUrl = custom((v, p) => {
  if (typeof v !== 'string') fail(p, `expected a NATS URL such as "nats://127.0.0.1:4222", got ${describe(v)}`);
  const urls = v.split(',').map((s) => s.trim());
  for (const u of urls) {
    if (!/^(nats|tls):\/\/[^\s/]+$/.test(u)) fail(p, `expected NATS URLs ("nats://host:port", several separated by commas), got ${JSON.stringify(u)}`);
  }
  return urls.join(',');
});

export const clusterSpec: SectionSpec = section(
  {
    bus: busUrl,
    node_name: str({ check: subjectToken('a node name') }),
    advertised_address: str({ nonEmpty: true }),
    heartbeat_interval: int({ min: 100, max: 3_600_000, default: 1000 }),
    heartbeat_timeout: int({ min: 200, max: 86_400_000, default: 5000 }),
    request_timeout: int({ min: 50, max: 600_000, default: 2000 }),
    delivery_batch_size: int({ min: 1, max: 10_000, default: 100 }),
    delivery_keep_max: int({ min: 0, max: 10_000_000, default: 10_000 }),
    delivery_keep_bytes: int({ min: 0, max: 4_294_967_296, default: 16 * 1024 * 1024 }),
  },
  {
    default: true,
    process(c: ClusterConfig, p) {
      if (c.heartbeat_timeout <= c.heartbeat_interval) {
        fail(`${p}.heartbeat_timeout`, `must be longer than cluster.heartbeat_interval (${c.heartbeat_interval} ms), got ${c.heartbeat_timeout}`);
      }
      return c;
    },
  },
);

/** What general.sm_backend = "cets" needs elsewhere; each error names the path to set. */
export function checkCluster(config: PetrelConfig): void {
  if (config.general.sm_backend !== 'cets') return;
  const problems = new ErrorCollector();
  const dbs = config.internal_databases as InternalDatabasesConfig | undefined;
  if (dbs?.cets === undefined) {
    problems.add(new ConfigError('internal_databases.cets', 'general.sm_backend = "cets" needs this section (backend = "rdbms", cluster_name): it is how the nodes find each other'));
  }
  if (config.cluster?.bus === undefined) {
    problems.add(new ConfigError('cluster.bus', 'general.sm_backend = "cets" needs the NATS bus the nodes exchange stanzas over, e.g. bus = "nats://127.0.0.1:4222"'));
  }
  if (config.outgoing_pools.rdbms?.default === undefined) {
    problems.add(new ConfigError('outgoing_pools.rdbms.default', 'general.sm_backend = "cets" needs a PostgreSQL pool (driver = "pgsql"): the node table lives there'));
  }
  problems.throwIfAny();
}
