// What an operator watches: the Prometheus scrape (every metric of
// docs/metrics.md there from start-up, MongooseIM's names moving with real
// traffic), `petrel metrics`, and the log lines of a connection's life in
// both log formats.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { CLI, REPO_ROOT, freePort, startPetrel, tempDir, testEnv, runCli, type Petrel } from './helpers/server.ts';
import { RawConnection, streamErrorCondition } from './helpers/raw.ts';

/** Every metric name in the tables of docs/metrics.md. */
async function documentedMetrics(): Promise<string[]> {
  const text = await readFile(join(REPO_ROOT, 'docs', 'metrics.md'), 'utf8');
  const names = [...text.matchAll(/^\| `([a-z_0-9]+)` \|/gm)].map((m) => m[1]!);
  assert.ok(names.length > 30, `docs/metrics.md lists ${names.length} metrics`);
  return names;
}

async function scrape(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(res.status, 200);
  return res.text();
}

/** The value of one series in a scrape, or undefined. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_0-9]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/([a-z_]+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

function metricsToml(httpPort: number): string {
  return (
    `[[listen.http]]\n  port = ${httpPort}\n  ip_address = "127.0.0.1"\n` +
    '  [[listen.http.handlers.mongoose_prometheus_handler]]\n    host = "_"\n    path = "/metrics"\n\n' +
    '[outgoing_pools.http.http_pool]\n  connection.host = "http://127.0.0.1:9"\n\n' +
    '[modules.mod_event_pusher.backend.http]\n  path = "/events"\n\n' +
    // The rabbit backend's metrics exist with no broker: its connection is tried at a closed port.
    '[outgoing_pools.rabbit.event_pusher]\n  connection.host = "127.0.0.1"\n  connection.port = 9\n\n' +
    '[modules.mod_event_pusher.rabbit.presence_exchange]\n\n' +
    '[modules.mod_event_pusher.push]\n\n' +
    '[modules.mod_csi]\n\n' +
    '[instrumentation.prometheus]\n'
  );
}

describe('the Prometheus scrape', () => {
  let server: Petrel;
  let httpPort: number;
  before(async () => {
    httpPort = await freePort();
    server = await startPetrel({ users: [['alice', 'alice-pw'], ['bob', 'bob-pw']], extraToml: metricsToml(httpPort) });
  });
  after(async () => {
    await server.dispose();
  });

  test('right after start, every metric docs/metrics.md lists is there, the server\'s at zero', async () => {
    const text = await scrape(httpPort);
    for (const name of await documentedMetrics()) assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), `${name} is documented but not scraped`);
    const c2s = { host_type: 'localhost', connection_type: 'c2s' };
    assert.equal(sample(text, 'xmpp_element_in_message_count', c2s), 0);
    assert.equal(sample(text, 'xmpp_element_out_presence_error_count', c2s), 0);
    assert.equal(sample(text, 'sm_session_count', { host_type: 'localhost' }), 0);
    assert.equal(sample(text, 'sm_session_logins', { host_type: 'localhost' }), 0);
    assert.equal(sample(text, 'c2s_auth_failed_count', { host_type: 'localhost' }), 0);
    assert.equal(sample(text, 'petrel_c2s_stream_errors_total', { condition: 'conflict' }), 0);
    assert.equal(sample(text, 'petrel_offline_messages_stored_total', { host_type: 'localhost' }), 0);
    assert.equal(sample(text, 'tcp_data_in_byte_size', { connection_type: 'c2s' }), 0);
  });

  test('logins, messages, a failed login and a replaced session show under MongooseIM\'s names', async () => {
    const conns: RawConnection[] = [];
    try {
      const bad = await RawConnection.open(server.port);
      conns.push(bad);
      await bad.openStream();
      bad.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from('\0alice\0wrong').toString('base64')}</auth>`);
      await bad.waitFor(/<failure/);
      const alice = await RawConnection.open(server.port);
      conns.push(alice);
      await alice.login('alice', 'alice-pw', 'desk');
      alice.send("<message to='bob@localhost' type='chat' id='m1'><body>hi</body></message>");
      alice.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
      await alice.waitFor(/id=["']p1["']/);
      const again = await RawConnection.open(server.port);
      conns.push(again);
      await again.login('alice', 'alice-pw', 'desk');
      assert.equal(streamErrorCondition(await alice.untilClosed(5000)), 'conflict');
      const text = await scrape(httpPort);
      const c2s = { host_type: 'localhost', connection_type: 'c2s' };
      assert.ok(sample(text, 'xmpp_element_in_message_count', c2s)! >= 1);
      assert.ok(sample(text, 'xmpp_element_in_iq_count', c2s)! >= 3, 'two binds and a ping');
      assert.ok(sample(text, 'xmpp_element_out_iq_count', c2s)! >= 3);
      assert.equal(sample(text, 'c2s_auth_failed_count', { host_type: 'localhost' }), 1);
      assert.equal(sample(text, 'petrel_c2s_auth_succeeded_total', { host_type: 'localhost' }), 2);
      assert.equal(sample(text, 'sm_session_logins', { host_type: 'localhost' }), 2);
      assert.equal(sample(text, 'sm_session_logouts', { host_type: 'localhost' }), 1);
      assert.equal(sample(text, 'sm_session_count', { host_type: 'localhost' }), 1);
      assert.equal(sample(text, 'sm_unique_sessions_count'), 1);
      assert.equal(sample(text, 'petrel_c2s_stream_errors_total', { condition: 'conflict' }), 1);
      assert.equal(sample(text, 'petrel_offline_messages_stored_total', { host_type: 'localhost' }), 1);
      assert.ok(sample(text, 'petrel_c2s_connections_accepted_total')! >= 3);
      assert.ok(sample(text, 'tcp_data_in_byte_size', { connection_type: 'c2s' })! > 0);

      const cli = await server.cli(['metrics']);
      assert.equal(cli.code, 0, cli.stderr);
      assert.match(cli.stdout, /^sm_session_count\s+host_type=localhost\s+1$/m);
      assert.match(cli.stdout, /^sm_session_logins\s+host_type=localhost\s+2$/m);
      assert.match(cli.stdout, /^c2s_auth_failed_count\s+host_type=localhost\s+1$/m);
      assert.match(cli.stdout, /^xmpp_element_in_message_count\s+host_type=localhost\s+[1-9]/m);
    } finally {
      for (const c of conns) c.destroy();
    }
  });
});

describe('log lines', () => {
  test('at loglevel "debug" a connection\'s life is logged: accepted, resource bound, session ended, closed', async () => {
    const server = await startPetrel({ users: [['alice', 'alice-pw']], extraToml: '' });
    try {
      // The helper's config says "info"; this one asks for the debug lines too.
      await server.stop();
      const text = (await readFile(server.configPath, 'utf8')).replace('loglevel = "info"', 'loglevel = "debug"');
      await writeFile(server.configPath, text);
      server.logs.length = 0;
      await server.start();
      const c = await RawConnection.open(server.port);
      await c.login('alice', 'alice-pw', 'phone');
      c.send('</stream:stream>');
      await c.untilClosed(5000);
      const accepted = await server.waitForLog((l) => l.what === 'c2s_connection_accepted');
      const bound = await server.waitForLog((l) => l.what === 'c2s_resource_bound');
      const ended = await server.waitForLog((l) => l.what === 'c2s_session_ended');
      const closed = await server.waitForLog((l) => l.what === 'c2s_connection_closed');
      assert.equal(accepted.level, 20);
      assert.equal(bound.level, 30);
      assert.equal(bound.jid, 'alice@localhost/phone');
      assert.equal(ended.level, 30);
      assert.equal(ended.jid, 'alice@localhost/phone');
      assert.equal(closed.session, accepted.session);
      assert.equal(bound.session, accepted.session);
    } finally {
      await server.dispose();
    }
  });

  test('at loglevel "info" the debug lines are left out and the info ones kept', async () => {
    const server = await startPetrel({ users: [['alice', 'alice-pw']] });
    try {
      const c = await RawConnection.open(server.port);
      await c.login('alice', 'alice-pw', 'phone');
      c.send('</stream:stream>');
      await c.untilClosed(5000);
      await server.waitForLog((l) => l.what === 'c2s_session_ended');
      assert.ok(server.logs.some((l) => l.what === 'c2s_resource_bound'));
      assert.ok(!server.logs.some((l) => l.what === 'c2s_connection_accepted' || l.what === 'c2s_connection_closed'));
      assert.ok(server.logs.every((l) => l.what !== 'unparsed'), 'every line is JSON when stdout is not a terminal');
    } finally {
      await server.dispose();
    }
  });

  test('general.log_format = "text" writes readable lines, not JSON', async () => {
    const dir = await tempDir('petrel-logtext-');
    const port = await freePort();
    const configPath = join(dir, 'petrel.toml');
    await writeFile(
      configPath,
      `[general]\n  hosts = ["localhost"]\n  loglevel = "info"\n  log_format = "text"\n  data_dir = "data"\n` +
        `[[listen.c2s]]\n  port = ${port}\n  ip_address = "127.0.0.1"\n[auth]\n  [auth.password]\n    scram_iterations = 4096\n  [auth.internal]\n`,
    );
    const reg = await runCli(['register', 'alice', 'localhost', 'alice-pw', '-c', configPath]);
    assert.equal(reg.code, 0, reg.stderr);
    const child = spawn(process.execPath, [CLI, 'start', '-c', configPath], { cwd: REPO_ROOT, env: testEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await until(() => out.includes('Petrel started'), () => out);
      const c = await RawConnection.open(port);
      await c.login('alice', 'alice-pw', 'phone');
      c.destroy();
      await until(() => out.includes('session ended'), () => out);
      const lines = out.trim().split('\n');
      const boundLine = lines.find((l) => l.includes('resource bound'));
      assert.ok(boundLine !== undefined, out);
      assert.match(boundLine, /INFO/);
      assert.throws(() => JSON.parse(boundLine));
      assert.match(out, /what: "c2s_resource_bound"/);
      assert.match(out, /jid: "alice@localhost\/phone"/);
    } finally {
      child.kill('SIGTERM');
      assert.equal(await exited, 0, out);
      await rm(dir, { recursive: true, force: true });
    }
  });
});

async function until(cond: () => boolean, context: () => string, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out; output so far:\n${context()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
