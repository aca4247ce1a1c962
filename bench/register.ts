// Creates the benchmark's accounts in one pass over the store: s0..s(N-1),
// r0..r(N-1) and i0..i(M-1), all with the same password. The SCRAM entries
// are derived once and shared by every account (same salt), which is fine
// for throw-away accounts and turns 20,000 PBKDF2 runs into two; logins
// still pay one PBKDF2 each, as with any stored SCRAM account.
import { join } from 'node:path';
import { SQLITE_FILE } from '../src/storage/index.ts';
import { ACCOUNTS } from '../src/storage/accounts.ts';
import { migrateSqlite } from '../src/storage/migrations.ts';
import { closeSqliteDatabase, openSqliteDatabase } from '../src/storage/sqlite.ts';
import { makeStoredCredentials } from '../src/xmpp/sasl/index.ts';

export async function registerUsers(o: { dataDir: string; domain: string; pairs: number; idle: number; password: string; iterations: number }): Promise<number> {
  const creds = await makeStoredCredentials(o.password, { format: 'scram', iterations: o.iterations });
  const db = openSqliteDatabase(join(o.dataDir, SQLITE_FILE));
  migrateSqlite(db, ACCOUNTS.migrations.component, ACCOUNTS.migrations.internal);
  const users = ACCOUNTS.internal(db);
  const names: string[] = [];
  for (let i = 0; i < o.pairs; i++) names.push(`s${i}`, `r${i}`);
  for (let i = 0; i < o.idle; i++) names.push(`i${i}`);
  let created = 0;
  // One transaction: one commit instead of one per account.
  db.exec('BEGIN');
  try {
    for (const name of names) if (await users.createUser(name, o.domain, creds)) created++;
    db.exec('COMMIT');
  } catch (err) {
    db.exec('ROLLBACK');
    throw err;
  } finally {
    closeSqliteDatabase(db);
  }
  return created;
}
