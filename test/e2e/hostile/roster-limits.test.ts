// A user's roster is bounded: items per roster, name and group length,
// groups per item ([modules.mod_roster] max_items, max_name_length,
// max_groups, max_group_length). A roster stored over the limits (by an
// older release, by hand in SQL, or under limits since lowered) is read cut
// to them: the server starts, answers `roster get` with what fits and
// broadcasts presence to no more than max_items contacts. Run on both
// stores.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type { Petrel } from '../helpers/server.ts';
import { RawConnection, startHostile, stillServes } from './setup.ts';
import { createTestDatabase, pgReachable, PG_UNREACHABLE, type TestDatabase } from '../postgres/db.ts';

const reachable = await pgReachable();

const BOB = 'pw-bob-roster';
const ALICE = 'pw-alice-roster';
const LIMITS = { max_items: 40, max_name_length: 64, max_groups: 3, max_group_length: 16 };
/** Rows written straight into the store, far over every limit. */
const STORED = 2000;
/** A name that escaping makes six times longer: `"` is written `&quot;`. */
const NAME = '"'.repeat(20_000);
const GROUPS = Array.from({ length: 50 }, (_, i) => `${i}`.padEnd(2000, 'g'));

interface Store {
  /** Writes STORED items for bob@localhost straight into the store. */
  fill(server: Petrel): Promise<void>;
}

const sqliteStore: Store = {
  async fill(server) {
    const db = new DatabaseSync(join(server.dir, 'data', 'petrel.sqlite'));
    try {
      db.exec('PRAGMA busy_timeout = 5000');
      const ins = db.prepare(`INSERT INTO roster (user, domain, contact, name, subscription, ask, pending_in, groups) VALUES ('bob', 'localhost', ?, ?, 'both', NULL, 0, ?)`);
      db.exec('BEGIN');
      for (let i = 0; i < STORED; i++) ins.run(`c${String(i).padStart(5, '0')}@localhost`, NAME, JSON.stringify(GROUPS));
      db.exec('COMMIT');
    } finally {
      db.close();
    }
  },
};

function pgStore(db: () => TestDatabase): Store {
  return {
    async fill() {
      await db().query(
        `INSERT INTO petrel_roster (domain, username, contact, name, subscription, ask, pending_in, groups)
         SELECT 'localhost', 'bob', 'c' || lpad(i::text, 5, '0') || '@localhost', $1, 'both', NULL, false, $2::text[]
         FROM generate_series(0, $3 - 1) AS i`,
        [NAME, GROUPS, STORED],
      );
    },
  };
}

async function rosterGet(raw: RawConnection, id: string): Promise<string> {
  raw.send(`<iq type='get' id='${id}'><query xmlns='jabber:iq:roster'/></iq>`);
  return raw.waitFor(new RegExp(`<iq[^>]*id=["']${id}["'][^]*?</iq>`), 20_000);
}

function checkBounded(result: string): void {
  const items = [...result.matchAll(/<item\b[^>]*>/g)];
  assert.equal(items.length, LIMITS.max_items, 'as many items as max_items, no more');
  for (const [tag] of items) {
    const name = /name="([^"]*)"/.exec(tag)?.[1] ?? '';
    assert.ok(name.replaceAll('&quot;', '"').length <= LIMITS.max_name_length, 'the name is cut to max_name_length');
  }
  for (const [, g] of result.matchAll(/<group>([^<]*)<\/group>/g)) {
    assert.ok(g!.length <= LIMITS.max_group_length, 'groups longer than max_group_length are left out');
  }
}

function suite(name: string, store: () => Store, backend: () => Record<string, string>, extraToml: () => string | undefined): void {
  describe(name, () => {
    let server: Petrel;
    before(async () => {
      server = await startHostile({ roster: { ...LIMITS, ...backend() }, extraToml: extraToml(), users: [['bob', BOB], ['alice', ALICE]] });
      await store().fill(server);
    });
    after(async () => {
      await server?.dispose();
    });

    test('roster get of a roster stored far over the limits answers with max_items items, each within the limits', { timeout: 60_000 }, async () => {
      const raw = await RawConnection.open(server.port);
      try {
        await raw.login('bob', BOB, 'desk');
        checkBounded(await rosterGet(raw, 'r1'));
        // Presence goes to the bounded roster; the server goes on.
        raw.send('<presence/>');
        await raw.waitFor(/<presence[^>]*from=["']bob@localhost\/desk["']/);
        raw.send("<iq type='get' id='alive' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
        await raw.waitFor(/id=["']alive["']/);
      } finally {
        raw.destroy();
      }
      await stillServes(server, 'alice', ALICE);
    });

    test('a roster set past the limits is refused: a new item on a full roster with not-allowed, a long name with not-acceptable', { timeout: 60_000 }, async () => {
      const raw = await RawConnection.open(server.port);
      try {
        await raw.login('bob', BOB, 'editor');
        raw.send(`<iq type='set' id='s1'><query xmlns='jabber:iq:roster'><item jid='newcomer@localhost'/></query></iq>`);
        assert.match(await raw.waitFor(/<\/iq>/), /type="error"[^]*<not-allowed/);
        raw.send(`<iq type='set' id='s2'><query xmlns='jabber:iq:roster'><item jid='c00001@localhost' name='${'n'.repeat(65)}'/></query></iq>`);
        assert.match(await raw.waitFor(/<\/iq>/), /type="error"[^]*<not-acceptable/);
        raw.send(`<iq type='set' id='s3'><query xmlns='jabber:iq:roster'><item jid='c00001@localhost' name='Friend'><group>a</group><group>b</group><group>c</group><group>d</group></item></query></iq>`);
        assert.match(await raw.waitFor(/<\/iq>/), /type="error"[^]*<not-acceptable/);
        // An existing item can still change on a full roster.
        raw.send(`<iq type='set' id='s4'><query xmlns='jabber:iq:roster'><item jid='c00001@localhost' name='Friend'><group>mates</group></item></query></iq>`);
        await raw.waitFor(/<iq[^>]*id="s4"[^>]*type="result"|<iq[^>]*type="result"[^>]*id="s4"/);
      } finally {
        raw.destroy();
      }
    });

    test('the server restarts over the roster stored over the limits and still serves it', { timeout: 60_000 }, async () => {
      await server.stop();
      // The first start's server_started line must not stand for this one.
      server.logs.splice(0);
      await server.start();
      const raw = await RawConnection.open(server.port);
      try {
        await raw.login('bob', BOB, 'again');
        checkBounded(await rosterGet(raw, 'r2'));
      } finally {
        raw.destroy();
      }
    });
  });
}

suite('a roster over the limits in the embedded store (SQLite)', () => sqliteStore, () => ({}), () => undefined);

describe('a roster over the limits in PostgreSQL', { skip: reachable ? false : PG_UNREACHABLE }, () => {
  let db: TestDatabase | undefined;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db?.drop();
  });
  suite('rdbms', () => pgStore(() => db!), () => ({ backend: 'rdbms' }), () => db?.toml);
});
