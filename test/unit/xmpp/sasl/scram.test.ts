import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { createSaslServer, makeStoredCredentials } from '../../../../src/xmpp/sasl/index.ts';
import type { SaslOptions, SaslServer, SaslStep } from '../../../../src/xmpp/sasl/index.ts';
import type { StoredCredentials } from '../../../../src/storage/types.ts';

type Mech = 'SCRAM-SHA-1' | 'SCRAM-SHA-256';
type H = 'sha1' | 'sha256';
const hashOf = (m: Mech): H => (m === 'SCRAM-SHA-1' ? 'sha1' : 'sha256');
const hmac = (h: H, key: Buffer, data: string) => createHmac(h, key).update(data).digest();
const H_ = (h: H, data: Buffer) => createHash(h).update(data).digest();
const xor = (a: Buffer, b: Buffer) => Buffer.from(a.map((x, i) => x ^ b[i]!));
const text = (s: SaslStep) => (s.kind === 'challenge' ? s.data.toString('utf8') : '');

async function options(format: 'scram' | 'plain' = 'scram'): Promise<SaslOptions> {
  const users = new Map<string, StoredCredentials>([['user', await makeStoredCredentials('pencil', { format, iterations: 128 })]]);
  return { domain: 'example.com', iterations: 128, lookup: async (u) => users.get(u) ?? null };
}

interface Tweaks {
  gs2?: string;
  user?: string;
  password?: string;
  /** Rewrites the nonce the client sends back. */
  nonce?: (serverNonce: string) => string;
  /** Rewrites the whole final message. */
  final?: (m: string) => string;
}

/** An independent SCRAM client (RFC 5802 §3); returns every server answer and the expected signature. */
async function exchange(mech: Mech, o: SaslOptions, t: Tweaks = {}) {
  const h = hashOf(mech);
  const server: SaslServer = createSaslServer(mech, o);
  const gs2 = t.gs2 ?? 'n,,';
  const clientNonce = randomBytes(18).toString('base64');
  const clientFirstBare = `n=${t.user ?? 'user'},r=${clientNonce}`;
  const first = await server.step(Buffer.from(gs2 + clientFirstBare));
  if (first.kind !== 'challenge') return { first, final: null, expected: null };
  const serverFirst = text(first);
  const attrs = Object.fromEntries(serverFirst.split(',').map((kv) => [kv[0], kv.slice(2)]));
  assert.ok(attrs.r!.startsWith(clientNonce), 'the server nonce extends the client nonce');
  assert.ok(attrs.r!.length > clientNonce.length, 'the server adds its own nonce');
  const salted = pbkdf2Sync(t.password ?? 'pencil', Buffer.from(attrs.s!, 'base64'), Number(attrs.i), h === 'sha1' ? 20 : 32, h);
  const clientKey = hmac(h, salted, 'Client Key');
  const storedKey = H_(h, clientKey);
  const serverKey = hmac(h, salted, 'Server Key');
  const withoutProof = `c=${Buffer.from(gs2).toString('base64')},r=${t.nonce ? t.nonce(attrs.r!) : attrs.r!}`;
  const authMessage = `${clientFirstBare},${serverFirst},${withoutProof}`;
  const proof = xor(clientKey, hmac(h, storedKey, authMessage));
  let finalMsg = `${withoutProof},p=${proof.toString('base64')}`;
  if (t.final) finalMsg = t.final(finalMsg);
  const final = await server.step(Buffer.from(finalMsg));
  return { first, final, expected: 'v=' + hmac(h, serverKey, authMessage).toString('base64'), serverFirst };
}

for (const mech of ['SCRAM-SHA-1', 'SCRAM-SHA-256'] as const) {
  test(`a full ${mech} exchange succeeds and the server proves it knows the key`, async () => {
    const { first, final, expected, serverFirst } = await exchange(mech, await options());
    assert.equal(first.kind, 'challenge');
    assert.match(serverFirst!, /^r=[\x21-\x2b\x2d-\x7e]+,s=[A-Za-z0-9+/=]+,i=128$/);
    assert.equal(final?.kind, 'success');
    assert.equal(final?.kind === 'success' && final.username, 'user');
    assert.equal(final?.kind === 'success' && final.data?.toString('utf8'), expected);
  });

  test(`${mech} against credentials stored in plain text computes the keys on the fly`, async () => {
    const { final, expected } = await exchange(mech, await options('plain'));
    assert.equal(final?.kind, 'success');
    assert.equal(final?.kind === 'success' && final.data?.toString('utf8'), expected);
  });

  test(`${mech} with a wrong password fails as not-authorized`, async () => {
    const { final } = await exchange(mech, await options(), { password: 'pencil!' });
    assert.deepEqual(final, { kind: 'failure', condition: 'not-authorized' });
  });
}

test('SCRAM for an unknown user answers the first message like for a real user, then fails as not-authorized', async () => {
  const o = await options();
  const { first, final } = await exchange('SCRAM-SHA-256', o, { user: 'nobody' });
  assert.equal(first.kind, 'challenge');
  assert.match(text(first), /,s=[A-Za-z0-9+/]{22}==,i=128$/);
  assert.deepEqual(final, { kind: 'failure', condition: 'not-authorized' });
});

test('SCRAM for an unknown user announces the same salt on every attempt', async () => {
  const o = await options();
  const salt = async () => text((await createSaslServer('SCRAM-SHA-1', o).step(Buffer.from('n,,n=nobody,r=abc')))).split(',s=')[1];
  const a = await salt();
  assert.equal(await salt(), a);
  const other = text(await createSaslServer('SCRAM-SHA-1', o).step(Buffer.from('n,,n=someone,r=abc'))).split(',s=')[1];
  assert.notEqual(other, a);
});

test('SCRAM rejects a final message whose nonce lacks the server part', async () => {
  const { final } = await exchange('SCRAM-SHA-256', await options(), { nonce: (n) => n.slice(0, 24) });
  assert.deepEqual(final, { kind: 'failure', condition: 'not-authorized' });
});

test('SCRAM rejects a final message whose nonce was altered', async () => {
  const { final } = await exchange('SCRAM-SHA-256', await options(), { nonce: (n) => n + 'x' });
  assert.deepEqual(final, { kind: 'failure', condition: 'not-authorized' });
});

test('SCRAM rejects a final message replayed into another exchange', async () => {
  const o = await options();
  let captured = '';
  await exchange('SCRAM-SHA-1', o, { final: (m) => (captured = m) });
  const s = createSaslServer('SCRAM-SHA-1', o);
  await s.step(Buffer.from('n,,n=user,r=' + captured.split(',r=')[1]!.slice(0, 24)));
  assert.deepEqual(await s.step(Buffer.from(captured)), { kind: 'failure', condition: 'not-authorized' });
});

test('SCRAM accepts the "y" channel-binding flag but refuses channel binding itself', async () => {
  const { final } = await exchange('SCRAM-SHA-256', await options(), { gs2: 'y,,' });
  assert.equal(final?.kind, 'success');
  const { first } = await exchange('SCRAM-SHA-256', await options(), { gs2: 'p=tls-unique,,' });
  assert.equal(first.kind === 'failure' && first.condition, 'not-authorized');
});

test('SCRAM refuses a final message whose channel-binding data differs from the gs2 header', async () => {
  const { final } = await exchange('SCRAM-SHA-256', await options(), { final: (m) => m.replace('c=biws', 'c=eSws') });
  assert.equal(final?.kind === 'failure' && final.condition, 'not-authorized');
});

test('SCRAM accepts an authzid equal to the user bare JID and rejects any other', async () => {
  const ok = await exchange('SCRAM-SHA-256', await options(), { gs2: 'n,a=user@example.com,' });
  assert.equal(ok.final?.kind, 'success');
  const bad = await exchange('SCRAM-SHA-256', await options(), { gs2: 'n,a=admin@example.com,' });
  assert.deepEqual(bad.first, { kind: 'failure', condition: 'invalid-authzid' });
});

test('SCRAM decodes escaped commas and equals signs in names', async () => {
  const bad = await exchange('SCRAM-SHA-1', await options(), { gs2: 'n,a=user=2Cx@example.com,' });
  assert.deepEqual(bad.first, { kind: 'failure', condition: 'invalid-authzid' });
  const broken = await exchange('SCRAM-SHA-1', await options(), { user: 'us=41er' });
  assert.equal(broken.first.kind === 'failure' && broken.first.condition, 'malformed-request');
});

test('SCRAM without an initial response sends an empty challenge first', async () => {
  const s = createSaslServer('SCRAM-SHA-1', await options());
  assert.deepEqual(await s.step(null), { kind: 'challenge', data: Buffer.alloc(0) });
  assert.equal((await s.step(Buffer.from('n,,n=user,r=abcdef'))).kind, 'challenge');
});

test('malformed SCRAM first messages give malformed-request, never an exception', async () => {
  const o = await options();
  for (const m of ['', 'x', 'n,', 'n,,', 'n,,r=abc,n=user', 'n,,n=user', 'n,,n=user,r=', 'n,,n=,r=abc', 'n,,m=ext,n=user,r=abc', 'n,b=x,n=user,r=abc', 'q,,n=user,r=abc', 'n,,n=user,r=a\u00e9']) {
    const r = await createSaslServer('SCRAM-SHA-256', o).step(Buffer.from(m));
    assert.equal(r.kind === 'failure' && r.condition, 'malformed-request', JSON.stringify(m));
  }
});

test('malformed SCRAM final messages give malformed-request or incorrect-encoding', async () => {
  const o = await options();
  const cases: Array<[(m: string) => string, string]> = [
    [(m) => m.split(',p=')[0]!, 'malformed-request'],
    [(m) => m.replace(/^c=[^,]*,/, ''), 'malformed-request'],
    [(m) => m.replace(/p=.*$/, 'p=@@@@'), 'incorrect-encoding'],
    [(m) => m.replace(/p=.*$/, 'p='), 'incorrect-encoding'],
    [(m) => m.replace('c=biws', 'c=b!ws'), 'incorrect-encoding'],
    [(m) => m.replace(/p=.*$/, 'p=AAAA'), 'not-authorized'],
  ];
  for (const [f, condition] of cases) {
    const { final } = await exchange('SCRAM-SHA-256', o, { final: f });
    assert.equal(final?.kind === 'failure' && final.condition, condition, f.toString());
  }
});

test('SCRAM messages that are not UTF-8 fail with incorrect-encoding', async () => {
  const r = await createSaslServer('SCRAM-SHA-1', await options()).step(Buffer.from([0x6e, 0x2c, 0x2c, 0xc3, 0x28]));
  assert.deepEqual(r, { kind: 'failure', condition: 'incorrect-encoding' });
});

test('SCRAM prepares the user name, so an upper-case name logs in as the stored user', async () => {
  const { final } = await exchange('SCRAM-SHA-256', await options(), { user: 'USER' });
  assert.equal(final?.kind === 'success' && final.username, 'user');
});

test('a finished SCRAM exchange refuses further steps', async () => {
  const o = await options();
  const s = createSaslServer('SCRAM-SHA-1', o);
  await s.step(Buffer.from('n,,n=user,r=abc'));
  await s.step(Buffer.from('c=biws,r=abc,p=AAAA'));
  assert.equal((await s.step(Buffer.from('c=biws,r=abc,p=AAAA'))).kind, 'failure');
});

test('SCRAM reports a storage failure as temporary-auth-failure', async () => {
  const s = createSaslServer('SCRAM-SHA-256', { domain: 'example.com', lookup: async () => { throw new Error('db down'); } });
  assert.deepEqual(await s.step(Buffer.from('n,,n=user,r=abc')), { kind: 'failure', condition: 'temporary-auth-failure' });
});
