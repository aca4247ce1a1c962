// SASL: PLAIN, SCRAM-SHA-1 and SCRAM-SHA-256 logins, wrong passwords, how
// credentials are stored, password.format = "plain" and auth.sasl_mechanisms.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type { XmppError } from '@xmpp/client';
import { startPetrel, type Petrel } from './helpers/server.ts';
import { connect, type Mechanism } from './helpers/client.ts';
import { NS_SASL, RawConnection } from './helpers/raw.ts';
import { ScramClient } from './helpers/scram.ts';

const PASSWORD = 'Correct-Horse-7431';

async function refusal(target: { port: number }, user: string, password: string, mechanism: Mechanism): Promise<XmppError> {
  try {
    const c = await connect(target, user, password, { mechanism });
    await c.close();
  } catch (err) {
    return err as XmppError;
  }
  throw new Error(`${mechanism} login with a wrong password succeeded`);
}

function b64(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64');
}

function unb64(s: string): string {
  return Buffer.from(s, 'base64').toString('utf8');
}

describe('SASL with SCRAM-stored credentials', () => {
  let server: Petrel;
  before(async () => {
    server = await startPetrel({ users: [['alice', PASSWORD]] });
  });
  after(async () => {
    await server.dispose();
  });

  for (const mechanism of ['PLAIN', 'SCRAM-SHA-1', 'SCRAM-SHA-256'] as const) {
    test(`a user logs in with ${mechanism}`, async () => {
      const c = await connect(server, 'alice', PASSWORD, { mechanism });
      assert.equal(c.bare, 'alice@localhost');
      await c.close();
      const line = await server.waitForLog((l) => l.what === 'c2s_auth_ok' && l.mechanism === mechanism);
      assert.equal(line.user, 'alice');
    });

    test(`a wrong password is refused with not-authorized over ${mechanism}`, async () => {
      const err = await refusal(server, 'alice', PASSWORD + 'x', mechanism);
      assert.equal(err.condition, 'not-authorized');
    });
  }

  test('an unknown user is refused with not-authorized', async () => {
    const err = await refusal(server, 'mallory', PASSWORD, 'SCRAM-SHA-256');
    assert.equal(err.condition, 'not-authorized');
  });

  test('the server signature of SCRAM-SHA-256 proves the server holds the ServerKey of the password', async () => {
    const raw = await RawConnection.open(server.port);
    try {
      const features = await raw.openStream();
      assert.match(features, /<mechanism>SCRAM-SHA-256<\/mechanism>/);
      const scram = new ScramClient('sha256', 'alice', PASSWORD);
      raw.send(`<auth xmlns='${NS_SASL}' mechanism='SCRAM-SHA-256'>${b64(scram.first())}</auth>`);
      const challenge = await raw.waitFor(/<challenge[^>]*>([^<]*)<\/challenge>/);
      const serverFirst = unb64(/<challenge[^>]*>([^<]*)<\/challenge>/.exec(challenge)![1]!);
      // RFC 7677 §4: at least 4096 iterations.
      assert.ok(Number(/(?:^|,)i=(\d+)/.exec(serverFirst)![1]) >= 4096);
      raw.send(`<response xmlns='${NS_SASL}'>${b64(scram.final(serverFirst))}</response>`);
      const success = await raw.waitFor(/<success[^>]*>([^<]*)<\/success>/);
      const serverFinal = unb64(/<success[^>]*>([^<]*)<\/success>/.exec(success)![1]!);
      assert.ok(scram.verify(serverFinal), `bad server signature in ${serverFinal}`);
    } finally {
      raw.destroy();
    }
  });

  test('credentials are stored as salt, iterations, StoredKey and ServerKey, never the password', async () => {
    const dataDir = join(server.dir, 'data');
    const db = new DatabaseSync(join(dataDir, 'petrel.sqlite'), { readOnly: true });
    try {
      const row = db.prepare('SELECT credentials FROM users WHERE user = ? AND domain = ?').get('alice', 'localhost') as { credentials: string };
      const creds = JSON.parse(row.credentials) as Record<string, Record<string, unknown>>;
      assert.equal(creds.plain, undefined);
      for (const hash of ['sha1', 'sha256']) {
        const c = creds[hash]!;
        assert.deepEqual(Object.keys(c).sort(), ['iterations', 'salt', 'serverKey', 'storedKey']);
        assert.equal(c.iterations, 4096);
        assert.ok(Buffer.from(c.salt as string, 'base64').length >= 16);
      }
      // No row of any table holds the password, as text or base64.
      const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Array<{ name: string }>;
      for (const { name } of tables) {
        for (const r of db.prepare(`SELECT * FROM "${name}"`).all()) {
          const text = JSON.stringify(r);
          assert.ok(!text.includes(PASSWORD) && !text.includes(b64(PASSWORD)), `table ${name} holds the password`);
        }
      }
    } finally {
      db.close();
    }
    // Nor do the bytes of the database files (the WAL included).
    for (const f of await readdir(dataDir)) {
      if (f === 'petrel.sock') continue; // the control socket holds no data
      const bytes = await readFile(join(dataDir, f));
      assert.equal(bytes.indexOf(PASSWORD), -1, `${f} holds the password`);
    }
  });
});

describe('password.format = "plain" and a restricted auth.sasl_mechanisms', () => {
  let server: Petrel;
  before(async () => {
    server = await startPetrel({ password_format: 'plain', sasl_mechanisms: ['plain', 'scram_sha1'], users: [['bob', PASSWORD]] });
  });
  after(async () => {
    await server.dispose();
  });

  test('a user stored with a plain password logs in with PLAIN and with SCRAM-SHA-1', async () => {
    for (const mechanism of ['PLAIN', 'SCRAM-SHA-1'] as const) {
      const c = await connect(server, 'bob', PASSWORD, { mechanism });
      assert.equal(c.bare, 'bob@localhost');
      await c.close();
    }
  });

  test('a wrong password is refused with not-authorized', async () => {
    const err = await refusal(server, 'bob', 'nope', 'PLAIN');
    assert.equal(err.condition, 'not-authorized');
  });

  test('only the configured mechanisms are offered, in the configured order, and no other is accepted', async () => {
    const raw = await RawConnection.open(server.port);
    try {
      const features = await raw.openStream();
      const offered = [...features.matchAll(/<mechanism>([^<]+)<\/mechanism>/g)].map((m) => m[1]);
      assert.deepEqual(offered, ['PLAIN', 'SCRAM-SHA-1']);
      const scram = new ScramClient('sha256', 'bob', PASSWORD);
      raw.send(`<auth xmlns='${NS_SASL}' mechanism='SCRAM-SHA-256'>${b64(scram.first())}</auth>`);
      const failure = await raw.waitFor(/<\/failure>/);
      assert.match(failure, /<invalid-mechanism\/>/);
    } finally {
      raw.destroy();
    }
  });
});
