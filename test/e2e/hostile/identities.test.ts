// Identities that look alike: accounts are told apart by their Nodeprep form
// (RFC 6122 Appendix A, case folding by RFC 3454 table B.2 exactly), so a
// dotless i is not an i; and general.refuse_mixed_script_localparts refuses
// user names that mix scripts ("аlice" with a Cyrillic а) at registration
// and at login. Also: a bind request cannot make the server prepare a huge
// resource.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import type { Petrel } from '../helpers/server.ts';
import { ScramClient } from '../helpers/scram.ts';
import { NS_BIND, NS_SASL, RawConnection, startHostile } from './setup.ts';

const DOTLESS = '\u0131';
const CYRILLIC_ALICE = '\u0430lice';

function b64(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64');
}

/** The SASL failure condition of a PLAIN attempt, or "success". */
async function plainOutcome(server: Petrel, user: string, password: string): Promise<string> {
  const raw = await RawConnection.open(server.port);
  try {
    await raw.openStream();
    raw.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${b64(`\0${user}\0${password}`)}</auth>`);
    const text = await raw.waitFor(/<success[^>]*(\/>|>[^<]*<\/success>)|<\/failure>/);
    if (text.includes('<success')) return 'success';
    return /<failure[^>]*><([a-z-]+)\/>/.exec(text)?.[1] ?? text;
  } finally {
    raw.destroy();
  }
}

describe('a dotless i and an i', () => {
  let server: Petrel;
  before(async () => {
    server = await startHostile({ users: [[DOTLESS, 'pw-dotless'], ['i', 'pw-plain']] });
  });
  after(async () => {
    await server.dispose();
  });

  test('ı@localhost and i@localhost are separate accounts, each logging in with its own password', async () => {
    const dotless = await RawConnection.open(server.port);
    const plain = await RawConnection.open(server.port);
    try {
      assert.equal(await dotless.login(DOTLESS, 'pw-dotless', 'one'), `${DOTLESS}@localhost/one`);
      assert.equal(await plain.login('i', 'pw-plain', 'two'), 'i@localhost/two');
      // Available, so that a message to the bare JID is delivered (RFC 6121 §8.5.2.1.1).
      dotless.send('<presence/>');
      plain.send('<presence/>');
      await dotless.waitFor(/<presence[^>]*from=["']\u0131@localhost\/one/);
      await plain.waitFor(/<presence[^>]*from=["']i@localhost\/two/);
      // A message to the one reaches that account only.
      plain.send(`<message to='${DOTLESS}@localhost' type='chat' id='m1'><body>for the dotless one</body></message>`);
      const got = await dotless.waitFor(/<\/message>/);
      assert.match(got, /from=["']i@localhost\/two["']/);
      assert.match(got, /for the dotless one/);
      dotless.send("<message to='i@localhost' type='chat' id='m2'><body>for the plain one</body></message>");
      assert.match(await plain.waitFor(/<\/message>/), new RegExp(`from=["']${DOTLESS}@localhost/one["'][^>]*>.*for the plain one`, 's'));
    } finally {
      dotless.destroy();
      plain.destroy();
    }
  });

  test('the password of one does not open the other, and a capital I is the plain i', async () => {
    assert.equal(await plainOutcome(server, 'i', 'pw-dotless'), 'not-authorized');
    assert.equal(await plainOutcome(server, DOTLESS, 'pw-plain'), 'not-authorized');
    assert.equal(await plainOutcome(server, 'I', 'pw-plain'), 'success');
  });

  test('registering the other spelling again is refused as an existing account, each by its own name', async () => {
    const again = await server.cli(['register', DOTLESS.toUpperCase(), 'localhost', 'pw-x']);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /user i@localhost already exists/);
  });

  test('a bind request with a 200 KiB resource is refused with bad-request, and a normal bind then works', async () => {
    const raw = await RawConnection.open(server.port);
    try {
      await raw.openStream();
      raw.send(`<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${b64('\0i\0pw-plain')}</auth>`);
      await raw.waitFor(/<success/);
      await raw.openStream();
      raw.send(`<iq type='set' id='big'><bind xmlns='${NS_BIND}'><resource>${'r'.repeat(200 * 1024)}</resource></bind></iq>`);
      const refused = await raw.waitFor(/<\/iq>/);
      assert.match(refused, /type=["']error["']/);
      assert.match(refused, /<bad-request /);
      raw.send(`<iq type='set' id='small'><bind xmlns='${NS_BIND}'><resource>small</resource></bind></iq>`);
      assert.match(await raw.waitFor(/<\/iq>/), /<jid>i@localhost\/small<\/jid>/);
    } finally {
      raw.destroy();
    }
  });
});

describe('general.refuse_mixed_script_localparts', () => {
  let server: Petrel;
  before(async () => {
    // The mixed-script account exists from before the option was set.
    server = await startHostile({ users: [[CYRILLIC_ALICE, 'pw-cyr'], ['alice', 'pw-alice']] });
    await server.stop();
    const toml = await readFile(server.configPath, 'utf8');
    await writeFile(server.configPath, toml.replace('[general]\n', '[general]\n  refuse_mixed_script_localparts = true\n'));
    await server.start();
  });
  after(async () => {
    await server.dispose();
  });

  test('petrel register refuses a mixed-script user name, naming it and its scripts', async () => {
    const r = await server.cli(['register', 'p\u0430ul', 'localhost', 'pw-paul']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /invalid user name "p\u0430ul": it mixes letters of Latin, Cyrillic \(general\.refuse_mixed_script_localparts is set\)/);
  });

  test('petrel register accepts single-script names in any script', async () => {
    await server.register('\u0438\u0432\u0430\u043D', 'pw-ivan');
    await server.register('paul.2', 'pw-paul');
    assert.equal(await plainOutcome(server, '\u0438\u0432\u0430\u043D', 'pw-ivan'), 'success');
  });

  test('a login as an existing mixed-script account fails with not-authorized, and the server logs why', async () => {
    assert.equal(await plainOutcome(server, CYRILLIC_ALICE, 'pw-cyr'), 'not-authorized');
    const line = await server.waitForLog((l) => l.what === 'c2s_auth_mixed_script');
    assert.equal(line.user, CYRILLIC_ALICE);
    assert.equal(line.domain, 'localhost');
    assert.equal(await plainOutcome(server, 'alice', 'pw-alice'), 'success');
  });

  test('a SCRAM login as the mixed-script account fails at the proof, like an unknown user', async () => {
    const raw = await RawConnection.open(server.port);
    try {
      await raw.openStream();
      const scram = new ScramClient('sha256', CYRILLIC_ALICE, 'pw-cyr');
      raw.send(`<auth xmlns='${NS_SASL}' mechanism='SCRAM-SHA-256'>${b64(scram.first())}</auth>`);
      const challenge = await raw.waitFor(/<challenge[^>]*>([^<]*)<\/challenge>/);
      const serverFirst = Buffer.from(/<challenge[^>]*>([^<]*)<\/challenge>/.exec(challenge)![1]!, 'base64').toString('utf8');
      raw.send(`<response xmlns='${NS_SASL}'>${b64(scram.final(serverFirst))}</response>`);
      assert.match(await raw.waitFor(/<\/failure>/), /<not-authorized\/>/);
    } finally {
      raw.destroy();
    }
  });
});
