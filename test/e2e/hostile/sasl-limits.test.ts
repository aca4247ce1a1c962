// SASL limits that must hold however a client pipelines: a new <auth/>
// counts the one it replaces as a failed attempt, failures are limited per
// connection, per address and per account, password hashing is bounded, and
// the salts shown for unknown users do not change at a restart.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Petrel } from '../helpers/server.ts';
import { ScramClient } from '../helpers/scram.ts';
import { NS_SASL, RawConnection, closedWith, startHostile, streamErrorCondition } from './setup.ts';

function plain(user: string, password: string): string {
  return `<auth xmlns='${NS_SASL}' mechanism='PLAIN'>${Buffer.from(`\0${user}\0${password}`).toString('base64')}</auth>`;
}

/** 49 wrong passwords and the right one last, all in one write. */
function pipelined(user: string, password: string): string {
  let s = '';
  for (let i = 0; i < 49; i++) s += plain(user, 'wrong-' + i);
  return s + plain(user, password);
}

/** One PLAIN attempt on a fresh connection: the SASL outcome ("success" or the failure condition), or "closed: <stream error>". */
async function attempt(server: Petrel, user: string, password: string): Promise<string> {
  const raw = await RawConnection.open(server.port);
  try {
    const features = await raw.openStream().catch(() => raw.data);
    if (!features.includes('<mechanisms')) return 'closed: ' + streamErrorCondition(raw.data);
    raw.send(plain(user, password));
    const reply = await raw.waitFor(/<success[^>]*\/>|<success[^>]*>[^<]*<\/success>|<\/failure>|<\/stream:error>/);
    if (reply.includes('<success')) return 'success';
    if (reply.includes('</stream:error>')) return 'closed: ' + streamErrorCondition(reply);
    return /<failure[^>]*><([a-z-]+)/.exec(reply)?.[1] ?? reply;
  } finally {
    raw.destroy();
  }
}

describe('pipelined <auth/> elements', () => {
  let server: Petrel;
  before(async () => {
    server = await startHostile({ general: { max_auth_failures_per_ip: 'infinity', max_auth_failures_per_account: 'infinity' }, users: [['alice', 'pw-alice']] });
  });
  after(async () => {
    await server.dispose();
  });

  test('fifty <auth/> elements in one write get no more tries than max_auth_failures: the right password last does not log in', async () => {
    const raw = await RawConnection.open(server.port);
    try {
      await raw.openStream();
      raw.send(pipelined('alice', 'pw-alice'));
      const said = await closedWith(raw);
      assert.doesNotMatch(said, /<success/);
      assert.equal(streamErrorCondition(said), 'policy-violation');
      assert.ok((said.match(/<failure/g) ?? []).length <= 3, said);
    } finally {
      raw.destroy();
    }
  });

  test('a new <auth/> while one is being answered is answered with not-authorized for the one it replaced', async () => {
    const raw = await RawConnection.open(server.port);
    try {
      await raw.openStream();
      raw.send(plain('alice', 'wrong') + plain('alice', 'pw-alice'));
      await raw.waitFor(/<success/);
      assert.match(raw.data, /<failure xmlns=['"]urn:ietf:params:xml:ns:xmpp-sasl['"]><not-authorized\/>/);
    } finally {
      raw.destroy();
    }
  });
});

describe('per address, whatever the pipelining', () => {
  let server: Petrel;
  before(async () => {
    server = await startHostile({
      listener: { max_auth_failures: 1000 },
      general: { max_auth_failures_per_ip: 5, auth_ban_duration: 60_000, max_auth_failures_per_account: 'infinity' },
      users: [['alice', 'pw-alice']],
    });
  });
  after(async () => {
    await server.dispose();
  });

  test('fifty <auth/> elements in one write count against the address: the right password last does not log in, and the address is banned', async () => {
    const raw = await RawConnection.open(server.port);
    try {
      await raw.openStream();
      raw.send(pipelined('alice', 'pw-alice'));
      const said = await closedWith(raw);
      assert.doesNotMatch(said, /<success/);
      assert.equal(streamErrorCondition(said), 'policy-violation');
    } finally {
      raw.destroy();
    }
    assert.equal(await attempt(server, 'alice', 'pw-alice'), 'closed: policy-violation');
  });
});

describe('per account', () => {
  let server: Petrel;
  before(async () => {
    server = await startHostile({
      general: { max_auth_failures_per_ip: 'infinity', max_auth_failures_per_account: 3, account_lock_duration: 1500 },
      users: [['alice', 'pw-alice'], ['bob', 'pw-bob']],
    });
  });
  after(async () => {
    await server.dispose();
  });

  test('after max_auth_failures_per_account failures from several connections the right password is refused for a while, then works again', async () => {
    for (let i = 0; i < 3; i++) assert.equal(await attempt(server, 'alice', 'wrong-' + i), 'not-authorized');
    assert.equal(await attempt(server, 'alice', 'pw-alice'), 'temporary-auth-failure');
    // Other accounts are not affected.
    assert.equal(await attempt(server, 'bob', 'pw-bob'), 'success');
    // The lock is temporary: the account's owner gets in once it is over.
    let outcome = '';
    for (let i = 0; i < 50 && outcome !== 'success'; i++) {
      await new Promise((r) => setTimeout(r, 200));
      outcome = await attempt(server, 'alice', 'pw-alice');
      assert.ok(outcome === 'success' || outcome === 'temporary-auth-failure', outcome);
    }
    assert.equal(outcome, 'success');
  });

  test('an unknown user name is locked the same way, so the lock does not tell which accounts exist', async () => {
    for (let i = 0; i < 3; i++) assert.equal(await attempt(server, 'nobody', 'wrong-' + i), 'not-authorized');
    assert.equal(await attempt(server, 'nobody', 'anything'), 'temporary-auth-failure');
  });

  test('fifty pipelined <auth/> elements for one account on many connections never log in', async () => {
    const raws = await Promise.all(Array.from({ length: 5 }, () => RawConnection.open(server.port)));
    try {
      await Promise.all(raws.map((r) => r.openStream()));
      for (const r of raws) r.send(pipelined('bob', 'pw-bob'));
      const said = await Promise.all(raws.map((r) => closedWith(r)));
      for (const s of said) assert.doesNotMatch(s, /<success/);
    } finally {
      for (const r of raws) r.destroy();
    }
  });
});

describe('password hashing', () => {
  let server: Petrel;
  before(async () => {
    server = await startHostile({
      general: { max_concurrent_password_hashing: 1, max_auth_failures_per_ip: 'infinity' },
      users: Array.from({ length: 4 }, (_, i) => [`u${i}`, `pw-u${i}`] as [string, string]),
    });
  });
  after(async () => {
    await server.dispose();
  });

  test('with one password hashing allowed at a time, twenty logins at once all get their answer', async () => {
    const outcomes = await Promise.all(Array.from({ length: 20 }, (_, i) => attempt(server, `u${i % 4}`, i % 2 === 0 ? `pw-u${i % 4}` : 'wrong')));
    outcomes.forEach((o, i) => assert.equal(o, i % 2 === 0 ? 'success' : 'not-authorized', `login ${i}`));
  });
});

describe('SCRAM salts of unknown users', () => {
  let server: Petrel;
  before(async () => {
    server = await startHostile({ users: [['alice', 'pw-alice']] });
  });
  after(async () => {
    await server.dispose();
  });

  async function saltOf(user: string): Promise<string> {
    const raw = await RawConnection.open(server.port);
    try {
      await raw.openStream();
      const scram = new ScramClient('sha256', user, 'whatever');
      raw.send(`<auth xmlns='${NS_SASL}' mechanism='SCRAM-SHA-256'>${Buffer.from(scram.first()).toString('base64')}</auth>`);
      const text = await raw.waitFor(/<challenge[^>]*>([^<]*)<\/challenge>/);
      const first = Buffer.from(/<challenge[^>]*>([^<]*)<\/challenge>/.exec(text)![1]!, 'base64').toString('utf8');
      return /(?:^|,)s=([^,]+)/.exec(first)![1]!;
    } finally {
      raw.destroy();
    }
  }

  test('the salt shown for an unknown user is the same after a restart, like a real user\'s, and its key is a 0600 file', async () => {
    const before1 = await saltOf('nobody-here');
    const real1 = await saltOf('alice');
    await server.stop();
    // Only the new process's start-up line counts.
    server.logs.length = 0;
    await server.start();
    assert.equal(await saltOf('nobody-here'), before1);
    assert.equal(await saltOf('alice'), real1);
    const st = await stat(join(server.dir, 'data', 'scram-secret'));
    assert.equal(st.mode & 0o777, 0o600);
  });
});
