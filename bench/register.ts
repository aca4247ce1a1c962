// Creates the benchmark's accounts in one pass over the store: s0..s(N-1),
// r0..r(N-1) and i0..i(M-1), all with the same password. The SCRAM entries
// are derived once and shared by every account (same salt), which is fine
// for throw-away accounts and turns 20,000 PBKDF2 runs into two; logins
// still pay one PBKDF2 each, as with any stored SCRAM account.
import { openStorage } from '../src/storage/index.ts';
import { makeStoredCredentials } from '../src/xmpp/sasl/index.ts';

export async function registerUsers(o: { dataDir: string; domain: string; pairs: number; idle: number; password: string; iterations: number }): Promise<number> {
  const creds = await makeStoredCredentials(o.password, { format: 'scram', iterations: o.iterations });
  const storage = openStorage(o.dataDir);
  const names: string[] = [];
  for (let i = 0; i < o.pairs; i++) names.push(`s${i}`, `r${i}`);
  for (let i = 0; i < o.idle; i++) names.push(`i${i}`);
  let created = 0;
  // One transaction: one commit instead of one per account.
  storage.db.exec('BEGIN');
  try {
    for (const name of names) if (await storage.users.createUser(name, o.domain, creds)) created++;
    storage.db.exec('COMMIT');
  } catch (err) {
    storage.db.exec('ROLLBACK');
    throw err;
  } finally {
    await storage.close();
  }
  return created;
}
