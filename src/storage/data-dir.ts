// A server instance keeps its state under its data directory, readable by
// its owner alone: the directory is 0700 and the files in it 0600, whatever
// the umask of the process that creates them (the server, or the
// command-line tool run from a shell with a permissive umask).
import { chmodSync, closeSync, fchmodSync, fsyncSync, mkdirSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;

/** How ensurePrivateDir left the directory; "shared": open to others and not ours to change. */
export type PrivateDirState = 'created' | 'private' | 'tightened' | 'shared';

/**
 * Makes `dir` (and any missing parent) exist with mode 0700. A directory made
 * by an earlier release under a permissive umask (0755) is tightened: nothing
 * else in it is meant for other users. One of another user that is open to
 * others is left as it is ("shared"); a directory that cannot be created throws.
 */
export function ensurePrivateDir(dir: string): PrivateDirState {
  // mkdir's mode passes through the umask, which can only take bits away;
  // chmod afterwards gives exactly 0700.
  const first = mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  if (first !== undefined) {
    chmodSync(dir, PRIVATE_DIR_MODE);
    return 'created';
  }
  if ((statSync(dir).mode & 0o077) === 0) return 'private';
  try {
    chmodSync(dir, PRIVATE_DIR_MODE);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EPERM') return 'shared';
    throw err;
  }
  return 'tightened';
}

/** Creates `file` empty with mode 0600 unless it exists; an existing one is set to 0600. */
export function ensurePrivateFile(file: string): void {
  // "a": create if missing, never truncate. fchmod on the open descriptor
  // sets the mode the umask may have narrowed, with no window between
  // creation and chmod in which the file is open to others (the directory
  // is private too).
  const fd = openSync(file, 'a', PRIVATE_FILE_MODE);
  try {
    fchmodSync(fd, PRIVATE_FILE_MODE);
  } finally {
    closeSync(fd);
  }
}

/**
 * The secret kept in `file` (mode 0600), made of `bytes` random bytes the
 * first time and read back ever after, so that what is derived from it stays
 * the same across restarts. Created exclusively ("wx"): two processes
 * starting at once cannot both write one. A file of another length is an
 * error naming it, never silently replaced.
 */
export function privateSecret(file: string, bytes: number): Buffer {
  try {
    const fd = openSync(file, 'wx', PRIVATE_FILE_MODE);
    try {
      fchmodSync(fd, PRIVATE_FILE_MODE);
      const secret = randomBytes(bytes);
      writeSync(fd, secret);
      fsyncSync(fd);
      return secret;
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const secret = readFileSync(file);
  if (secret.length !== bytes) throw new Error(`${file}: expected a secret of ${bytes} bytes, found ${secret.length}; remove the file to make a new one`);
  ensurePrivateFile(file);
  return secret;
}
