// MongooseIM's stock configuration, as its production release renders it
// (test/fixtures/mongooseim/), loads unchanged: check-config accepts it with
// one warning per feature Petrel lacks, and a server starts on it. Then the
// access rules it relies on, enforced over real sockets: max_user_sessions,
// max_user_offline_messages and the c2s listener's access rule.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { CLI, Petrel, REPO_ROOT, freePort, makeCert, runCli, tempDir, testEnv } from './helpers/server.ts';
import { RawConnection, streamErrorCondition } from './helpers/raw.ts';

const FIXTURE = join(REPO_ROOT, 'test', 'fixtures', 'mongooseim', 'mongooseim.toml');

/** The fixture, unchanged, in a fresh directory with the certificate files it names. */
async function fixtureDir(): Promise<{ dir: string; file: string }> {
  const dir = await tempDir('petrel-mim-');
  const ssl = join(dir, 'priv', 'ssl');
  await mkdir(ssl, { recursive: true });
  const { certfile, keyfile } = await makeCert(ssl);
  await rename(certfile, join(ssl, 'fake_cert.pem'));
  await rename(keyfile, join(ssl, 'fake_key.pem'));
  const file = join(dir, 'mongooseim.toml');
  await copyFile(FIXTURE, file);
  return { dir, file };
}

/** Every feature the stock file configures that Petrel lacks, with what its warning must say. */
const EXPECTED_MISSING: Array<[string, string]> = [
  ['BOSH', 'BOSH (XEP-0206) clients cannot connect'],
  ['GraphQL', 'the GraphQL admin and user API is not served'],
  ['s2s', 'no federation'],
  ['listen.component', 'external components (XEP-0114) cannot connect'],
  ['service_bosh', 'BOSH sessions are not kept'],
  ['service_mongoose_system_metrics', 'no usage report is sent'],
  ['instrumentation.log', 'metrics are not written to the log'],
  ['mod_adhoc', 'ad-hoc commands (XEP-0050) get service-unavailable'],
  ['mod_cache_users', 'account lookups are not cached'],
  ['mod_last', 'last activity requests (XEP-0012) get service-unavailable'],
  ['mod_privacy', 'privacy lists (XEP-0016) get service-unavailable'],
  ['mod_blocking', 'blocking requests (XEP-0191) get service-unavailable'],
  ['mod_private', 'private XML storage requests (XEP-0049) get service-unavailable'],
  ['mod_register', 'in-band registration requests (XEP-0077) get service-unavailable'],
  ['mod_presence', 'presence is part of the core'],
  ['mod_sic', 'server IP check requests (XEP-0279) get service-unavailable'],
  ['mod_vcard', 'vCard requests (XEP-0054) get service-unavailable'],
];

describe('MongooseIM\'s stock mongooseim.toml', () => {
  test('the fixture is the rendered production file, with no template variable left', async () => {
    const text = await readFile(FIXTURE, 'utf8');
    assert.doesNotMatch(text, /\{\{/);
    assert.match(text, /^\[general\]\n  loglevel = "warning"\n  hosts = \["localhost"\]/);
    assert.match(text, /\[\[listen\.c2s\]\]\n  port = 5222\n  access = "c2s"\n  shaper = "normal"/);
  });

  test('petrel check-config accepts it unchanged, with one warning per missing feature saying what is lost', async () => {
    const { dir, file } = await fixtureDir();
    try {
      const r = await runCli(['check-config', '-c', file]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /mongooseim\.toml: OK \(hosts: localhost; 1 c2s listener\(s\)/);
      const warnings = r.stderr.split('\n').filter((l) => l.includes(': not implemented; '));
      for (const [feature, loses] of EXPECTED_MISSING) {
        const mine = warnings.filter((l) => l.startsWith(`petrel: warning: ${feature}: not implemented; `));
        assert.equal(mine.length, 1, `one warning for ${feature}:\n${r.stderr}`);
        assert.ok(mine[0]!.includes(loses), mine[0]);
      }
      assert.equal(warnings.length, EXPECTED_MISSING.length, r.stderr);
      // The features are listed together, after the options that have no effect.
      const lines = r.stderr.trim().split('\n');
      const first = lines.findIndex((l) => l.includes(': not implemented; '));
      assert.ok(lines.slice(first).every((l) => l.includes(': not implemented; ')), r.stderr);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('petrel start runs it unchanged: the c2s listener and the Prometheus handler answer, a vCard request gets service-unavailable', async (t) => {
    // The file binds fixed ports (5222 for c2s, 9091 for Prometheus); Petrel
    // has no override, so this runs only where both are free.
    for (const port of [5222, 9091]) {
      if (!(await portIsFree(port))) {
        t.skip(`port ${port} is in use on this machine; the stock file binds it, so petrel start on it is not tried`);
        return;
      }
    }
    const { dir, file } = await fixtureDir();
    // The file sets no data_dir: the state goes to a directory of the test's own.
    const env = testEnv({ PETREL_DATA_DIR: join(dir, 'data') });
    const reg = await runCli(['register', 'alice', 'localhost', 'alice-pw-1', '-c', file], { env });
    assert.equal(reg.code, 0, reg.stderr);
    const child = spawn(process.execPath, [CLI, 'start', '-c', file], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (out += c));
    let code: number | null | undefined;
    const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve((code = c))));
    try {
      // loglevel = "warning" in the file: the start-up line is not logged, so the listeners show it is up.
      const metrics = await poll(async () => {
        if (code !== undefined) return null;
        const res = await fetch('http://127.0.0.1:9091/metrics');
        return res.status === 200 ? res.text() : undefined;
      }, () => out);
      if (metrics === null) {
        // Another process (a parallel test starting the shipped configuration, say) took the port after the check.
        assert.match(out, /EADDRINUSE/, out);
        t.skip(`a fixed port of the stock file was taken while the server started: ${/address already in use \S+/.exec(out)?.[0] ?? ''}`);
        return;
      }
      assert.match(metrics, /^# HELP /m);
      // The log reaches this process through a pipe, and may come after the listener answers.
      const warned = () => out.split('\n').filter((l) => l.startsWith('{') && l.endsWith('}')).map((l) => JSON.parse(l) as { what?: string; feature?: string })
        .filter((l) => l.what === 'config_feature_not_implemented').map((l) => l.feature);
      const features = await poll(async () => (warned().length >= EXPECTED_MISSING.length ? warned() : undefined), () => out).catch(() => warned());
      assert.deepEqual(features.sort(), EXPECTED_MISSING.map(([f]) => f).sort());

      const c = await RawConnection.open(5222);
      try {
        await c.login('alice', 'alice-pw-1', 'phone');
        c.send("<iq type='get' id='vc1'><vCard xmlns='vcard-temp'/></iq>");
        const reply = await c.waitFor(/<iq[^>]*id=["']vc1["'][^]*?<\/iq>/);
        assert.match(reply, /type=["']error["']/);
        assert.match(reply, /<service-unavailable /);
      } finally {
        c.destroy();
      }
    } finally {
      if (code === undefined) {
        child.kill('SIGTERM');
        assert.equal(await exited, 0, out);
      }
      await rm(dir, { recursive: true, force: true });
    }
  });
});

async function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '0.0.0.0', () => s.close(() => resolve(true)));
  });
}

/** Retries `fn` until it gives a value (connection refused counts as not yet), within 20 s. */
async function poll<T>(fn: () => Promise<T | undefined>, context: () => string): Promise<T> {
  const until = Date.now() + 20_000;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch {
      // not listening yet
    }
    if (Date.now() > until) throw new Error(`the server did not come up:\n${context()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// ---------------------------------------------------------------------------
// The access rules of the stock file, enforced

const ACCESS_TOML = `
[acl]
  local = [{}]
  admin = [{user = "boss"}]
  blocked = [{user = "mallory"}, {user_glob = "spam*"}]

[access]
  max_user_sessions = [
    {acl = "admin", value = 3},
    {acl = "all", value = 2}
  ]

  max_user_offline_messages = [
    {acl = "admin", value = 4},
    {acl = "all", value = 2}
  ]

  c2s = [
    {acl = "blocked", value = "deny"},
    {acl = "all", value = "allow"}
  ]
`;

describe('[acl] and [access] over real sockets', () => {
  let server: Petrel;
  before(async () => {
    const dir = await tempDir('petrel-access-');
    const port = await freePort();
    const text =
      `[general]\n  hosts = ["localhost"]\n  loglevel = "info"\n  data_dir = "data"\n\n` +
      `[[listen.c2s]]\n  port = ${port}\n  ip_address = "127.0.0.1"\n  access = "c2s"\n\n` +
      '[auth]\n  [auth.password]\n    format = "scram"\n    scram_iterations = 4096\n  [auth.internal]\n\n' +
      '[modules.mod_offline]\n[modules.mod_vcard]\n  host = "vjud.@HOST@"\n[modules.mod_private]\n' + ACCESS_TOML;
    const configPath = join(dir, 'petrel.toml');
    await writeFile(configPath, text);
    server = new Petrel(dir, configPath, [port], 'localhost');
    for (const u of ['alice', 'bob', 'boss', 'mallory', 'spammer']) await server.register(u, `${u}-pw`);
    await server.start();
  });
  after(async () => {
    await server.dispose();
  });

  test('past max_user_sessions the oldest session is replaced and ends with conflict; the rule gives admins more', async () => {
    const conns: RawConnection[] = [];
    try {
      for (const r of ['one', 'two', 'three']) {
        const c = await RawConnection.open(server.port);
        conns.push(c);
        await c.login('alice', 'alice-pw', r);
      }
      assert.equal(streamErrorCondition(await conns[0]!.untilClosed(5000)), 'conflict');
      for (const c of conns.slice(1)) {
        c.send("<iq type='get' id='alive' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
        await c.waitFor(/id=["']alive["']/);
      }
      // boss is in "admin": three sessions stay.
      const boss: RawConnection[] = [];
      for (const r of ['a', 'b', 'c']) {
        const c = await RawConnection.open(server.port);
        boss.push(c);
        conns.push(c);
        await c.login('boss', 'boss-pw', r);
      }
      for (const c of boss) {
        c.send("<iq type='get' id='alive2' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
        await c.waitFor(/id=["']alive2["']/);
      }
    } finally {
      for (const c of conns) c.destroy();
    }
  });

  test('max_user_offline_messages bounds the offline store: the next message bounces to its sender with resource-constraint', async () => {
    const alice = await RawConnection.open(server.port);
    try {
      await alice.login('alice', 'alice-pw', 'sender');
      for (let i = 1; i <= 3; i++) alice.send(`<message to='bob@localhost' type='chat' id='o${i}'><body>to bob ${i}</body></message>`);
      const bounce = await alice.waitFor(/<message[^>]*id=["']o3["'][^]*?<\/message>/);
      assert.match(bounce, /type=["']error["']/);
      assert.match(bounce, /<resource-constraint /);
      // boss is in "admin": four are kept for him.
      for (let i = 1; i <= 5; i++) alice.send(`<message to='boss@localhost' type='chat' id='b${i}'><body>to boss ${i}</body></message>`);
      const bossBounce = await alice.waitFor(/<message[^>]*id=["']b5["'][^]*?<\/message>/);
      assert.match(bossBounce, /<resource-constraint /);
      assert.doesNotMatch(alice.data, /id=["'](o[12]|b[1-4])["'][^>]*type=["']error["']/);
    } finally {
      alice.destroy();
    }
    const bob = await RawConnection.open(server.port);
    try {
      await bob.login('bob', 'bob-pw', 'back');
      bob.send('<presence/>');
      for (let i = 1; i <= 2; i++) await bob.waitFor(new RegExp(`id=["']o${i}["']`));
      assert.doesNotMatch(bob.data, /to bob 3/);
    } finally {
      bob.destroy();
    }
  });

  test('requests for a configured feature Petrel lacks get service-unavailable, and the start-up warning says so', async () => {
    const warned = server.logs.filter((l) => l.what === 'config_feature_not_implemented').map((l) => [l.feature, l.loses]);
    assert.deepEqual(warned, [
      ['mod_vcard', 'vCard requests (XEP-0054) get service-unavailable'],
      ['mod_private', 'private XML storage requests (XEP-0049) get service-unavailable'],
    ]);
    const c = await RawConnection.open(server.port);
    try {
      await c.login('alice', 'alice-pw', 'iq');
      const asks: Array<[string, string]> = [
        ['own-vcard', "<iq type='get' id='own-vcard'><vCard xmlns='vcard-temp'/></iq>"],
        ['bobs-vcard', "<iq type='get' id='bobs-vcard' to='bob@localhost'><vCard xmlns='vcard-temp'/></iq>"],
        ['private', "<iq type='get' id='private'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>"],
      ];
      for (const [id, iq] of asks) {
        c.send(iq);
        const reply = await c.waitFor(new RegExp(`<iq[^>]*id=["']${id}["'][^]*?</iq>`));
        assert.match(reply, /type=["']error["']/, id);
        assert.match(reply, /<service-unavailable /, id);
      }
    } finally {
      c.destroy();
    }
  });

  test('a user the c2s access rule denies cannot open a session: binding gets not-allowed', async () => {
    for (const user of ['mallory', 'spammer']) {
      const c = await RawConnection.open(server.port);
      try {
        await assert.rejects(c.login(user, `${user}-pw`, 'x'), (err: Error) => {
          assert.match(err.message, /binding failed: .*<not-allowed /);
          return true;
        });
      } finally {
        c.destroy();
      }
    }
    await server.waitForLog((l) => l.what === 'forbidden_session' && l.jid === 'mallory@localhost/x');
    // Anyone else is let in.
    const ok = await RawConnection.open(server.port);
    try {
      assert.equal(await ok.login('bob', 'bob-pw', 'fine'), 'bob@localhost/fine');
    } finally {
      ok.destroy();
    }
  });
});
