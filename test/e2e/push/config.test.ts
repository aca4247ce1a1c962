// `petrel check-config` on push configurations: what `start` would refuse is
// reported when the configuration loads, naming the option.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runCli, tempDir } from '../helpers/server.ts';

const BASE = '[general]\n  hosts = ["localhost"]\n  data_dir = "data"\n[auth.internal]\n';
const POOL = '[outgoing_pools.http.mp]\n  [outgoing_pools.http.mp.connection]\n    host = "http://127.0.0.1:9"\n';

async function checkConfig(toml: string) {
  const dir = await tempDir();
  try {
    await writeFile(join(dir, 'petrel.toml'), BASE + toml);
    return await runCli(['check-config', '-c', join(dir, 'petrel.toml')]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('check-config accepts the push backend with mod_push_service_mongoosepush and its pool', async () => {
  const r = await checkConfig(`${POOL}[modules.mod_event_pusher.push]\n  virtual_pubsub_hosts = ["pubsub.@HOSTS@"]\n[modules.mod_push_service_mongoosepush]\n  pool_name = "mp"\n`);
  assert.equal(r.code, 0, r.stderr);
});

test('check-config names the option when virtual pubsub hosts have no MongoosePush, its pool is missing, or the store has no pool', async () => {
  const cases: Array<[string, RegExp]> = [
    ['[modules.mod_event_pusher.push]\n  virtual_pubsub_hosts = ["pubsub.@HOSTS@"]\n',
      /modules\.mod_event_pusher\.push\.virtual_pubsub_hosts: .*configure \[modules\.mod_push_service_mongoosepush\]/],
    ['[modules.mod_event_pusher.push]\n  virtual_pubsub_hosts = ["pubsub.@HOSTS@"]\n[modules.mod_push_service_mongoosepush]\n  pool_name = "nope"\n',
      /modules\.mod_push_service_mongoosepush\.pool_name: no outgoing pool "nope"/],
    [`${POOL}[modules.mod_event_pusher.push]\n  backend = "rdbms"\n`, /modules\.mod_event_pusher\.push\.backend: "rdbms" needs an \[outgoing_pools\.rdbms\.default\] pool/],
    ['[modules.mod_event_pusher.push]\n  plugin_module = "mod_my_plugin"\n', /modules\.mod_event_pusher\.push\.plugin_module: must be one of/],
    ['[modules.mod_push_service_mongoosepush]\n  api_version = "v3"\n', /modules\.mod_push_service_mongoosepush.*pool_name/],
  ];
  for (const [toml, message] of cases) {
    const r = await checkConfig(toml);
    assert.equal(r.code, 1, toml);
    assert.match(r.stderr, message);
  }
});
