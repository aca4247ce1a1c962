// Schema of the `outgoing_pools` section. Names and defaults follow
// MongooseIM's mongoose_config_spec.erl (outgoing_pools/1, wpool/1,
// outgoing_pool_connection(<<"http">>) and (<<"rabbit">>), tls/1, server_name_indication/0)
// and the rdbms pool options of doc/configuration/outgoing-connections.md.
// Options marked compat() are accepted so a MongooseIM file loads as written;
// Petrel does not use them, and setting one draws a warning.
import { bool, compat, custom, describe, fail, int, list, path, section, str } from '../config/schema.ts';
import type { Spec } from '../config/schema.ts';
import { RDBMS_POOL_TAG } from '../storage/select.ts';
import { checkHostUrl, DEFAULT_PIPELINING } from './url.ts';

const POOL_SCOPES = ['global', 'host_type', 'host'] as const;

const POOL_STRATEGIES = [
  'best_worker',
  'random_worker',
  'next_worker',
  'available_worker',
  'next_available_worker',
] as const;
const TLS_VERIFY_MODES = ['peer', 'selfsigned_peer', 'selfsigned', 'none'] as const;

/** Petrel serves every host from one pool per tag. */
const scope = compat(str({ oneOf: POOL_SCOPES, default: 'global' }), 'one pool per tag serves every host');

const serverNameIndication = section(
  {
    enabled: bool({ default: true }),
    host: str({ nonEmpty: true }),
    protocol: compat(
      str({ oneOf: ['default', 'https'], default: 'default' }),
      'host names are always matched by the HTTPS rules of RFC 6125, wildcards included',
    ),
  },
  { default: true },
);

const tls = section(
  {
    verify_mode: str({ oneOf: TLS_VERIFY_MODES, default: 'peer' }),
    certfile: path({ exists: true }),
    cacertfile: path({ exists: true }),
    keyfile: path({ exists: true }),
    password: str(),
    ciphers: str({ nonEmpty: true }),
    versions: list(str({ oneOf: ['tlsv1.2', 'tlsv1.3'] }), { nonEmpty: true, unique: true }),
    crl_files: list(path({ exists: true }), { default: [] }),
    disconnect_on_failure: bool({ default: true }),
    server_name_indication: serverNameIndication,
  },
  {
    process: (v, p) => {
      // Since OTP 28.1 MongooseIM refuses a certfile without a separate keyfile; so does Node's TLS.
      if (v.certfile !== undefined && v.keyfile === undefined) fail(p + '.keyfile', 'required when certfile is set');
      if (v.keyfile !== undefined && v.certfile === undefined) fail(p + '.certfile', 'required when keyfile is set');
      if (v.verify_mode === 'selfsigned') v.verify_mode = 'selfsigned_peer';
      return v;
    },
  },
);

const connection = section(
  {
    host: str({ nonEmpty: true, check: checkHostUrl }),
    path_prefix: str({ nonEmpty: true, default: '/' }),
    request_timeout: int({ min: 0, default: 2000 }),
    pipelining: int({ min: 1, max: 128, default: DEFAULT_PIPELINING }),
    tls,
  },
  { required: ['host'] },
);

const httpPool = section(
  {
    scope,
    workers: int({ min: 1, default: 10 }),
    strategy: compat(str({ oneOf: POOL_STRATEGIES, default: 'best_worker' }), 'a request takes the first free connection'),
    call_timeout: int({ min: 1, default: 5000 }),
    max_worker_queue_len: int({ min: 0 }),
    connection,
  },
  {
    required: ['connection'],
    process: (v, p) => {
      if (v.max_worker_queue_len !== undefined && v.strategy !== 'best_worker') {
        fail(p + '.max_worker_queue_len', 'can only be set for the best_worker strategy');
      }
      // "host" is MongooseIM's deprecated spelling of "host_type".
      if (v.scope === 'host') v.scope = 'host_type';
      return v;
    },
  },
);

// RDBMS pools (outgoing_pool_connection(<<"rdbms">>) in MongooseIM): PostgreSQL
// only. The stores look for the pool tagged "default", as MongooseIM's do.

const OTHER_RDBMS_DRIVERS = ['mysql', 'odbc', 'cockroachdb'];

const rdbmsDriver = custom((value, p) => {
  if (typeof value !== 'string') return fail(p, `expected a string, got ${describe(value)}`);
  if (OTHER_RDBMS_DRIVERS.includes(value)) return fail(p, `driver ${JSON.stringify(value)} is not supported by Petrel; only "pgsql" (PostgreSQL) is`);
  if (value !== 'pgsql') return fail(p, `must be "pgsql", got ${JSON.stringify(value)}`);
  return value;
});

const rdbmsTls = section(
  {
    required: bool({ default: false }),
    verify_mode: str({ oneOf: ['peer', 'selfsigned_peer', 'selfsigned', 'none'], default: 'peer' }),
    cacertfile: path({ exists: true }),
  },
  {
    process: (v) => {
      if (v.verify_mode === 'selfsigned') v.verify_mode = 'selfsigned_peer';
      return v;
    },
  },
);

const rdbmsConnection = section(
  {
    driver: rdbmsDriver,
    host: str({ nonEmpty: true }),
    port: int({ min: 1, max: 65535, default: 5432 }),
    database: str({ nonEmpty: true }),
    username: str({ nonEmpty: true }),
    password: str(),
    query_timeout: int({ min: 1, default: 5000 }),
    keepalive_interval: int({ min: 1 }),
    tls: rdbmsTls,
  },
  { required: ['driver', 'host', 'database', 'username', 'password'] },
);

const rdbmsPool = section(
  {
    scope,
    workers: int({ min: 1, default: 10 }),
    strategy: compat(str({ oneOf: POOL_STRATEGIES, default: 'best_worker' }), 'a query takes whichever connection is free'),
    call_timeout: int({ min: 1, default: 60000 }),
    connection: rdbmsConnection,
  },
  {
    required: ['connection'],
    process: (v) => {
      if (v.scope === 'host') v.scope = 'host_type';
      return v;
    },
  },
);

const rdbmsPools = section(
  {},
  {
    wildcard: rdbmsPool,
    process: (v: Record<string, unknown>, p, ctx) => {
      for (const tag of Object.keys(v)) {
        if (tag !== RDBMS_POOL_TAG) ctx.warnings.push(`${p}.${tag}: only the pool tagged "${RDBMS_POOL_TAG}" is used by Petrel's stores; this one is not used`);
      }
      return v;
    },
  },
);

// RabbitMQ pools (outgoing_pool_connection(<<"rabbit">>) in MongooseIM). The
// connection section may be left out: every option has a default. The event
// pusher's rabbit backend uses the pool tagged "event_pusher", as MongooseIM's does.

const rabbitReconnect = section(
  {
    attempts: compat(
      int({ min: 0, default: 0 }),
      'events wait in the durable outbox while the broker is unreachable, and the connection is tried again every reconnect.delay for as long as it takes',
    ),
    delay: int({ min: 0, default: 2000 }),
  },
  { default: true },
);

const rabbitConnection = section(
  {
    host: str({ nonEmpty: true, default: 'localhost' }),
    port: int({ min: 1, max: 65535, default: 5672 }),
    username: str({ nonEmpty: true, default: 'guest' }),
    password: str({ nonEmpty: true, default: 'guest' }),
    virtual_host: str({ nonEmpty: true, default: '/' }),
    confirms_enabled: bool({ default: false }),
    tls,
    reconnect: rabbitReconnect,
  },
  { default: true },
);

const rabbitPool = section(
  {
    scope,
    workers: int({ min: 1, default: 10 }),
    strategy: compat(str({ oneOf: POOL_STRATEGIES, default: 'best_worker' }), 'events are published in turn on one connection, up to `workers` at a time'),
    call_timeout: int({ min: 1, default: 5000 }),
    max_worker_queue_len: compat(int({ min: 0 }), 'events wait in the durable outbox, bounded by mod_event_pusher\'s outbox_max_events, not in worker queues'),
    connection: rabbitConnection,
  },
  {
    process: (v, p) => {
      if (v.max_worker_queue_len !== undefined && v.strategy !== 'best_worker') {
        fail(p + '.max_worker_queue_len', 'can only be set for the best_worker strategy');
      }
      if (v.scope === 'host') v.scope = 'host_type';
      return v;
    },
  },
);

const otherPoolType = custom((_value, p) => {
  const type = p.slice(p.lastIndexOf('.') + 1);
  return fail(p, `Petrel has no ${type} pools; only [outgoing_pools.http.TAG], [outgoing_pools.rabbit.TAG] and [outgoing_pools.rdbms.default] are supported`);
});

export const outgoingPoolsSpec: Spec = section(
  {
    http: section({}, { wildcard: httpPool, default: true }),
    rabbit: section({}, { wildcard: rabbitPool, default: true }),
    rdbms: rdbmsPools,
  },
  { wildcard: otherPoolType, default: true },
);
