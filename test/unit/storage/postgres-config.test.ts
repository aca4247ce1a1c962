// The configuration of PostgreSQL stores: [outgoing_pools.rdbms.default],
// [auth.rdbms], the `backend` of mod_roster and mod_offline, and the event
// pusher's `outbox_backend`, checked together as the command-line tool does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../../src/config/load.ts';
import { ConfigError } from '../../../src/config/schema.ts';
import { moduleSpecs } from '../../../src/modules/registry.ts';
import { outgoingPoolsSpec } from '../../../src/outgoing/spec.ts';
import { checkStores, storeLocations } from '../../../src/modules/storage.ts';

delete process.env.PETREL_DATA_DIR;

const HOSTS = '[general]\nhosts = ["localhost"]\n';
const POOL = `[outgoing_pools.rdbms.default.connection]
driver = "pgsql"
host = "db.example.com"
database = "petrel"
username = "petrel"
password = "not-a-real-password"
`;

function load(text: string) {
  const config = parseConfig(text, '/srv/petrel/petrel.toml', { sections: { outgoing_pools: outgoingPoolsSpec }, modules: moduleSpecs() });
  // As the command-line tool's loadConfig does: the accounts' and every module's store option against the pools.
  checkStores(config);
  return { config, stores: storeLocations(config) };
}

function rejects(text: string, path: string, message: RegExp): void {
  assert.throws(() => load(text), (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.path, path);
    assert.match(err.message, message);
    return true;
  });
}

test('an rdbms pool gets MongooseIM\'s defaults: port 5432, 10 workers, 5 s queries, 60 s calls', () => {
  const { config } = load(HOSTS + POOL);
  assert.deepEqual(config.outgoing_pools.rdbms?.default, {
    scope: 'global',
    workers: 10,
    strategy: 'best_worker',
    call_timeout: 60000,
    connection: { driver: 'pgsql', host: 'db.example.com', port: 5432, database: 'petrel', username: 'petrel', password: 'not-a-real-password', query_timeout: 5000 },
  });
});

test('a configuration without PostgreSQL keeps every store embedded', () => {
  const { config, stores } = load(HOSTS + '[modules.mod_roster]\n[modules.mod_offline]\n');
  assert.equal(config.outgoing_pools.rdbms, undefined);
  assert.deepEqual(stores, { accounts: 'internal', mod_roster: 'internal', mod_offline: 'internal' });
});

test('MongooseIM\'s rdbms example is accepted as written and puts every store in PostgreSQL', () => {
  const { config, stores } = load(HOSTS + `
[auth]
  methods = ["rdbms"]
[outgoing_pools.rdbms.default]
  scope = "global"
  workers = 5
  [outgoing_pools.rdbms.default.connection]
    driver = "pgsql"
    host = "localhost"
    database = "mongooseim"
    username = "mongooseim"
    password = "mongooseim_secret"
    keepalive_interval = 30
    [outgoing_pools.rdbms.default.connection.tls]
      required = true
      verify_mode = "none"
[modules.mod_roster]
  backend = "rdbms"
[modules.mod_offline]
  backend = "rdbms"
[modules.mod_event_pusher]
  outbox_backend = "rdbms"
`);
  assert.deepEqual(stores, { accounts: 'rdbms', mod_roster: 'rdbms', mod_offline: 'rdbms', mod_event_pusher: 'rdbms' });
  assert.equal(config.outgoing_pools.rdbms?.default?.workers, 5);
  assert.deepEqual(config.outgoing_pools.rdbms?.default?.connection.tls, { required: true, verify_mode: 'none' });
});

test('[auth.rdbms] alone selects the rdbms method', () => {
  const { config, stores } = load(HOSTS + POOL + '[auth.rdbms]\n');
  assert.deepEqual(config.auth.methods, ['rdbms']);
  assert.equal(stores.accounts, 'rdbms');
});

test('"mnesia", MongooseIM\'s default backend, is the embedded store', () => {
  const { config, stores } = load(HOSTS + '[modules.mod_roster]\nbackend = "mnesia"\n[modules.mod_offline]\nbackend = "internal"\n');
  assert.equal((config.modules.mod_roster as { backend: string }).backend, 'internal');
  assert.equal(stores.mod_offline, 'internal');
});

test('a store set to rdbms without an rdbms pool is an error naming the option', () => {
  rejects(HOSTS + '[auth.rdbms]\n', 'auth.rdbms', /needs an \[outgoing_pools\.rdbms\.default\] pool/);
  rejects(HOSTS + '[auth]\nmethods = ["rdbms"]\n', 'auth.methods[0]', /needs an \[outgoing_pools\.rdbms\.default\] pool/);
  rejects(HOSTS + '[modules.mod_roster]\nbackend = "rdbms"\n', 'modules.mod_roster.backend', /"rdbms" needs an \[outgoing_pools\.rdbms\.default\] pool/);
  rejects(HOSTS + '[modules.mod_offline]\nbackend = "rdbms"\n', 'modules.mod_offline.backend', /needs an/);
  rejects(HOSTS + '[modules.mod_event_pusher]\noutbox_backend = "rdbms"\n', 'modules.mod_event_pusher.outbox_backend', /needs an/);
  const other = POOL.replace('rdbms.default', 'rdbms.main');
  rejects(HOSTS + other + '[auth.rdbms]\n', 'auth.rdbms', /needs an/);
});

test('a pool tagged other than default is accepted with a warning that nothing uses it', () => {
  const { config } = load(HOSTS + POOL.replace('rdbms.default', 'rdbms.main'));
  assert.deepEqual(config.warnings, ['outgoing_pools.rdbms.main: only the pool tagged "default" is used by Petrel\'s stores; this one is not used']);
});

test('drivers other than pgsql are errors naming the driver path', () => {
  rejects(HOSTS + POOL.replace('"pgsql"', '"mysql"'), 'outgoing_pools.rdbms.default.connection.driver', /"mysql" is not supported by Petrel; only "pgsql"/);
  rejects(HOSTS + POOL.replace('"pgsql"', '"odbc"'), 'outgoing_pools.rdbms.default.connection.driver', /"odbc" is not supported/);
  rejects(HOSTS + POOL.replace('"pgsql"', '"oracle"'), 'outgoing_pools.rdbms.default.connection.driver', /must be "pgsql"/);
});

test('missing or wrong connection options are errors naming their path', () => {
  rejects(HOSTS + POOL.replace('password = "not-a-real-password"\n', ''), 'outgoing_pools.rdbms.default.connection.password', /missing/);
  rejects(HOSTS + POOL + 'port = 70000\n', 'outgoing_pools.rdbms.default.connection.port', /65535/);
  rejects(HOSTS + POOL + 'settings = "DSN=x"\n', 'outgoing_pools.rdbms.default.connection.settings', /unknown/);
  rejects(HOSTS + POOL + '[outgoing_pools.rdbms.default.connection.tls]\nverify_mode = "maybe"\n', 'outgoing_pools.rdbms.default.connection.tls.verify_mode', /must be one of/);
});

test('a module backend other than internal, mnesia or rdbms is an error naming it', () => {
  rejects(HOSTS + '[modules.mod_roster]\nbackend = "riak"\n', 'modules.mod_roster.backend', /must be one of "internal", "mnesia" .*"rdbms", got "riak"/);
});

test('accounts live in one store: two methods, or both sections without methods, are errors', () => {
  rejects(HOSTS + POOL + '[auth]\nmethods = ["rdbms", "internal"]\n[auth.internal]\n', 'auth.methods[1]', /one user store/);
  rejects(HOSTS + POOL + '[auth.internal]\n[auth.rdbms]\n', 'auth.rdbms', /both \[auth\.internal\] and \[auth\.rdbms\]/);
  const { stores } = load(HOSTS + POOL + '[auth]\nmethods = ["rdbms"]\n[auth.internal]\n[auth.rdbms]\n');
  assert.equal(stores.accounts, 'rdbms');
});
