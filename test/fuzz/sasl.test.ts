// Fuzzing the SASL servers (src/xmpp/sasl/): whatever the client sends,
// step() resolves (never rejects, never throws) to a challenge, a success or
// a failure with an RFC 6120 §6.5 condition; nothing but the right password
// (or the right SCRAM proof) ever succeeds; each step takes < 100 ms.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createSaslServer, makeStoredCredentials, type SaslMechanismName, type SaslStep } from '../../src/xmpp/sasl/index.ts';
import type { StoredCredentials } from '../../src/storage/types.ts';
import { ScramClient } from '../e2e/helpers/scram.ts';
import { MAX_MS, corpus, fc, mutated, params, timeAsync } from './lib.ts';

const CONDITIONS = new Set(['not-authorized', 'malformed-request', 'invalid-authzid', 'invalid-mechanism', 'temporary-auth-failure', 'incorrect-encoding']);
const MECHANISMS: SaslMechanismName[] = ['PLAIN', 'SCRAM-SHA-1', 'SCRAM-SHA-256'];
// Not the password of the corpus messages: those must fail like any other input.
const PASSWORD = 'Corr3ct-Horse';
const ITERATIONS = 4096;
const SEEDS = corpus('scram');

/** "user" has SCRAM keys, "plainuser" a stored password; anyone else is unknown. */
let users: Record<string, StoredCredentials>;
before(async () => {
  users = {
    user: await makeStoredCredentials(PASSWORD, { format: 'scram', iterations: ITERATIONS }),
    plainuser: await makeStoredCredentials(PASSWORD, { format: 'plain', iterations: ITERATIONS }),
  };
});

function server(mech: SaslMechanismName) {
  return createSaslServer(mech, { domain: 'localhost', iterations: ITERATIONS, lookup: async (u) => users[u] ?? null });
}

function checkStep(step: SaslStep): void {
  assert.ok(step.kind === 'challenge' || step.kind === 'success' || step.kind === 'failure', `unexpected step ${JSON.stringify(step)}`);
  if (step.kind === 'failure') assert.ok(CONDITIONS.has(step.condition), `unexpected condition ${step.condition}`);
  if (step.kind === 'challenge') assert.ok(Buffer.isBuffer(step.data));
}

/** Runs a whole exchange of client messages (null: no initial response); every step checked and timed. */
async function exchange(mech: SaslMechanismName, messages: Array<Buffer | null>): Promise<SaslStep[]> {
  const s = server(mech);
  const steps: SaslStep[] = [];
  for (const m of messages) {
    let step!: SaslStep;
    const t0 = performance.now();
    step = await s.step(m);
    const ms = performance.now() - t0;
    if (ms >= MAX_MS) {
      // Timed again on a fresh server to tell a slow input from a pause of the process.
      const again = await timeAsync(async () => void (await server(mech).step(m)));
      assert.ok(again < MAX_MS, `${mech} took ${again.toFixed(1)} ms for one step`);
    }
    checkStep(step);
    steps.push(step);
    if (step.kind !== 'challenge') break;
  }
  return steps;
}

/** A client-final-message with its base64 fields decoded and encoded again. */
function canonical(msg: Buffer): string {
  return msg
    .toString('latin1')
    .split(',')
    .map((f) => (/^[cp]=/.test(f) ? f.slice(0, 2) + Buffer.from(f.slice(2), 'base64').toString('base64') : f))
    .join(',');
}

const message = fc.oneof(
  fc.constant(null),
  fc.uint8Array({ maxLength: 200 }).map((u) => Buffer.from(u)),
  fc.constantFrom(...SEEDS),
  mutated(SEEDS, 5),
);

test('arbitrary client messages never make a mechanism throw, and never succeed', async () => {
  await fc.assert(
    fc.asyncProperty(fc.constantFrom(...MECHANISMS), fc.array(message, { minLength: 1, maxLength: 4 }), async (mech, msgs) => {
      const steps = await exchange(mech, msgs);
      assert.ok(!steps.some((s) => s.kind === 'success'), `${mech} accepted ${JSON.stringify(msgs.map((m) => m?.toString('latin1')))}`);
    }),
    params(300),
  );
});

test('a SCRAM exchange with a real client-first and a mutated client-final never succeeds', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom<'sha1' | 'sha256'>('sha1', 'sha256'),
      fc.constantFrom('user', 'plainuser', 'nobody'),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
      async (hash, user, edits) => {
        const mech = hash === 'sha1' ? 'SCRAM-SHA-1' : 'SCRAM-SHA-256';
        const s = server(mech);
        const client = new ScramClient(hash, user, PASSWORD);
        const first = await s.step(Buffer.from(client.first()));
        checkStep(first);
        assert.equal(first.kind, 'challenge');
        const final = Buffer.from(client.final(first.kind === 'challenge' ? first.data.toString() : ''));
        const bad = Buffer.from(final);
        for (const [at, byte] of edits) bad[at % bad.length] = byte;
        const t0 = performance.now();
        const last = await s.step(bad);
        assert.ok(performance.now() - t0 < MAX_MS * 2);
        checkStep(last);
        // Base64 has spare bits: a change there decodes to the same proof, which may pass.
        if (canonical(bad) !== canonical(final)) assert.notEqual(last.kind, 'success', `a mutated proof was accepted: ${bad.toString('latin1')}`);
      },
    ),
    params(200),
  );
});

test('the right password succeeds through every mechanism for both storage formats', async () => {
  for (const user of ['user', 'plainuser']) {
    const plain = await exchange('PLAIN', [Buffer.from(`\0${user}\0${PASSWORD}`)]);
    assert.equal(plain.at(-1)!.kind, 'success');
    for (const hash of ['sha1', 'sha256'] as const) {
      const s = server(hash === 'sha1' ? 'SCRAM-SHA-1' : 'SCRAM-SHA-256');
      const client = new ScramClient(hash, user, PASSWORD);
      const first = await s.step(Buffer.from(client.first()));
      assert.equal(first.kind, 'challenge');
      const done = await s.step(Buffer.from(client.final((first as { data: Buffer }).data.toString())));
      assert.equal(done.kind, 'success', `${user} over ${hash}`);
    }
  }
});

test('structured PLAIN messages with random identities and passwords never succeed unless right', async () => {
  const field = fc.oneof(fc.constantFrom('user', 'plainuser', 'user@localhost', 'USER', '', PASSWORD, PASSWORD + '\u0000', '\u00AD'), fc.string({ maxLength: 12, unit: 'binary' }));
  await fc.assert(
    fc.asyncProperty(field, field, field, async (authz, authc, pw) => {
      const steps = await exchange('PLAIN', [Buffer.from(`${authz}\0${authc}\0${pw}`, 'utf8')]);
      const last = steps.at(-1)!;
      if (last.kind === 'success') {
        assert.ok(pw === PASSWORD && (authc === 'user' || authc === 'plainuser' || authc === 'USER'), `accepted ${JSON.stringify([authz, authc, pw])}`);
      }
    }),
    params(200),
  );
});
