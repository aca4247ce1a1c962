// The cluster's configuration: what general.sm_backend = "cets" needs, and
// bad values, each reported by check-config and refused by start, naming
// the TOML path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, runCli, tempDir } from '../helpers/server.ts';
import { createTestDatabase, pgReachable, PG_UNREACHABLE } from '../postgres/db.ts';

async function withConfig(toml: string, fn: (file: string) => Promise<void>): Promise<void> {
  const dir = await tempDir();
  try {
    const file = join(dir, 'petrel.toml');
    await writeFile(file, toml);
    await fn(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const GENERAL = '[general]\n  hosts = ["localhost"]\n  data_dir = "data"\n';

test('check-config names what sm_backend = "cets" lacks: the discovery section, the bus and the PostgreSQL pool', async () => {
  await withConfig(`${GENERAL}  sm_backend = "cets"\n[auth.internal]\n`, async (file) => {
    const r = await runCli(['check-config', '-c', file]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /internal_databases\.cets: general\.sm_backend = "cets" needs this section/);
    assert.match(r.stderr, /cluster\.bus: general\.sm_backend = "cets" needs the NATS bus/);
    assert.match(r.stderr, /outgoing_pools\.rdbms\.default: general\.sm_backend = "cets" needs a PostgreSQL pool/);
    const s = await runCli(['start', '-c', file]);
    assert.notEqual(s.code, 0);
    assert.match(s.stderr, /cluster\.bus/);
  });
});

test('check-config refuses an unknown sm_backend, the "file" discovery backend, a bad bus URL, a bad node name and bad bounds', async () => {
  const toml = `${GENERAL}  sm_backend = "redis"\n[auth.internal]\n[internal_databases.cets]\n  backend = "file"\n` +
    '[cluster]\n  bus = "http://127.0.0.1:4222"\n  node_name = "a.b"\n  heartbeat_interval = 2000\n  heartbeat_timeout = 1000\n';
  await withConfig(toml, async (file) => {
    const r = await runCli(['check-config', '-c', file]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /general\.sm_backend: /);
    assert.match(r.stderr, /internal_databases\.cets\.backend: only "rdbms" is supported/);
    assert.match(r.stderr, /cluster\.bus: expected NATS URLs/);
    assert.match(r.stderr, /cluster\.node_name: a node name is 1 to 64 letters/);
  });
  await withConfig(`${GENERAL}[auth.internal]\n[cluster]\n  heartbeat_interval = 2000\n  heartbeat_timeout = 1000\n`, async (file) => {
    const r = await runCli(['check-config', '-c', file]);
    assert.match(r.stderr, /cluster\.heartbeat_timeout: must be longer than cluster\.heartbeat_interval/);
  });
  await withConfig(`${GENERAL}[auth.internal]\n[cluster]\n  delivery_keep_max = -1\n  delivery_keep_bytes = "lots"\n`, async (file) => {
    const r = await runCli(['check-config', '-c', file]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /cluster\.delivery_keep_max: must be between 0 and/);
    assert.match(r.stderr, /cluster\.delivery_keep_bytes: expected an integer/);
  });
});

test('[internal_databases.mnesia] and sm_backend = "mnesia" keep the local session table, as MongooseIM files have them', async () => {
  await withConfig(`${GENERAL}  sm_backend = "mnesia"\n[auth.internal]\n[internal_databases.mnesia]\n`, async (file) => {
    const r = await runCli(['check-config', '-c', file]);
    assert.equal(r.code, 0, r.stderr);
  });
});

test('petrel cluster says a single node has no cluster', async () => {
  await withConfig(`${GENERAL}[auth.internal]\n`, async (file) => {
    const r = await runCli(['cluster', '-c', file]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /single node: general\.sm_backend is not "cets"/);
  });
});

test('check-config --connect names cluster.bus when nothing answers there', { skip: (await pgReachable()) ? false : PG_UNREACHABLE }, async () => {
  const db = await createTestDatabase();
  try {
    const port = await freePort();
    const toml = `${GENERAL}  sm_backend = "cets"\n[auth.rdbms]\n${db.toml}\n[internal_databases.cets]\n  cluster_name = "t_check"\n[cluster]\n  bus = "nats://127.0.0.1:${port}"\n`;
    await withConfig(toml, async (file) => {
      const plain = await runCli(['check-config', '-c', file]);
      assert.equal(plain.code, 0, plain.stderr);
      const r = await runCli(['check-config', '--connect', '-c', file]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /cluster\.bus: cannot connect/);
    });
  } finally {
    await db.drop();
  }
});
