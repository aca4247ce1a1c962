// Credential derivation shared by the SASL mechanisms and user management
// (RFC 5802 §3, RFC 7677).

import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import type { ScramCredentials, StoredCredentials } from './types.ts';
import { saslprep } from '../stringprep.ts';

const pbkdf2Async = promisify(pbkdf2);

export type ScramHash = 'sha1' | 'sha256';

export const HASH_LENGTH: Record<ScramHash, number> = { sha1: 20, sha256: 32 };

export const DEFAULT_ITERATIONS = 4096;

/**
 * Normalize(password) of RFC 5802 §2.2 / the comparison form of RFC 4616 §4:
 * SASLprep. A password SASLprep rejects is used as given rather than made
 * unusable, on both the storing and the checking side.
 */
export function normalizePassword(password: string): string {
  try {
    return saslprep(password);
  } catch {
    return password;
  }
}

/** SaltedPassword := Hi(Normalize(password), salt, i), with Hi = PBKDF2 (RFC 5802 §2.2). */
export async function saltedPassword(password: string, salt: Buffer, iterations: number, hash: ScramHash): Promise<Buffer> {
  return pbkdf2Async(normalizePassword(password), salt, iterations, HASH_LENGTH[hash], hash);
}

export function hmac(hash: ScramHash, key: Buffer, data: string | Buffer): Buffer {
  return createHmac(hash, key).update(data).digest();
}

export function digest(hash: ScramHash, data: Buffer): Buffer {
  return createHash(hash).update(data).digest();
}

/** StoredKey and ServerKey from a SaltedPassword (RFC 5802 §3). */
export function keysFromSalted(hash: ScramHash, salted: Buffer): { storedKey: Buffer; serverKey: Buffer } {
  const clientKey = hmac(hash, salted, 'Client Key');
  return { storedKey: digest(hash, clientKey), serverKey: hmac(hash, salted, 'Server Key') };
}

/** Salt defaults to 16 random bytes. Uses the asynchronous PBKDF2, never the blocking one. */
export async function makeScramCredentials(password: string, hash: ScramHash, iterations: number, salt?: Buffer): Promise<ScramCredentials> {
  const s = salt ?? randomBytes(16);
  const { storedKey, serverKey } = keysFromSalted(hash, await saltedPassword(password, s, iterations, hash));
  return { salt: s.toString('base64'), iterations, storedKey: storedKey.toString('base64'), serverKey: serverKey.toString('base64') };
}

/** "scram": SHA-1 and SHA-256 entries, each with its own salt; "plain": the password itself. */
export async function makeStoredCredentials(password: string, o: { format: 'scram' | 'plain'; iterations: number }): Promise<StoredCredentials> {
  if (o.format === 'plain') return { plain: password };
  const [sha1, sha256] = await Promise.all([
    makeScramCredentials(password, 'sha1', o.iterations),
    makeScramCredentials(password, 'sha256', o.iterations),
  ]);
  return { sha1, sha256 };
}

/** Constant-time equality that is also safe for buffers of different lengths. */
export function safeEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** True when a plain password matches stored credentials, whatever their format. */
export async function verifyPassword(password: string, creds: StoredCredentials): Promise<boolean> {
  if (creds.plain !== undefined) {
    // Hashing first gives equal-length inputs, so the comparison time does not depend on the password.
    const a = createHash('sha256').update(normalizePassword(password)).digest();
    const b = createHash('sha256').update(normalizePassword(creds.plain)).digest();
    return timingSafeEqual(a, b);
  }
  const hash: ScramHash | undefined = creds.sha256 ? 'sha256' : creds.sha1 ? 'sha1' : undefined;
  if (hash === undefined) return false;
  const scram = creds[hash]!;
  const salted = await saltedPassword(password, Buffer.from(scram.salt, 'base64'), scram.iterations, hash);
  const { storedKey, serverKey } = keysFromSalted(hash, salted);
  // Both keys are always compared, so the time taken does not tell which one differed.
  const storedOk = safeEqual(storedKey, Buffer.from(scram.storedKey, 'base64'));
  const serverOk = safeEqual(serverKey, Buffer.from(scram.serverKey, 'base64'));
  return storedOk && serverOk;
}

const processSecret = randomBytes(32);

/** A salt that is stable for one user name and key, and unpredictable without the key. */
export function derivedSalt(secret: Buffer | undefined, username: string, domain: string): Buffer {
  return hmac('sha256', secret ?? processSecret, `salt\0${domain}\0${username}`).subarray(0, 16);
}
