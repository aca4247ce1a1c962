// PLAIN (RFC 4616): message = [authzid] NUL authcid NUL passwd.

import { verifyPassword, makeScramCredentials } from './credentials.ts';
import { authzidAllowed, decodeUtf8, failure, prepUsername } from './common.ts';
import type { SaslOptions, SaslServer, SaslStep } from './types.ts';

export class PlainServer implements SaslServer {
  readonly mechanism = 'PLAIN' as const;
  #opts: SaslOptions;
  #state: 'initial' | 'challenged' | 'done' = 'initial';

  constructor(opts: SaslOptions) {
    this.#opts = opts;
  }

  async step(response: Buffer | null): Promise<SaslStep> {
    if (this.#state === 'done') return failure('malformed-request', 'authentication already finished');
    if (response === null) {
      if (this.#state === 'challenged') {
        this.#state = 'done';
        return failure('malformed-request', 'no credentials');
      }
      // No initial response: an empty challenge invites it (RFC 6120 §6.4.2).
      this.#state = 'challenged';
      return { kind: 'challenge', data: Buffer.alloc(0) };
    }
    this.#state = 'done';
    try {
      return await this.#verify(response);
    } catch {
      return failure('temporary-auth-failure');
    }
  }

  #hashing<T>(work: () => Promise<T>): Promise<T> {
    const h = this.#opts.hashing;
    return h === undefined ? work() : h(work);
  }

  async #verify(response: Buffer): Promise<SaslStep> {
    const text = decodeUtf8(response);
    if (text === null) return failure('incorrect-encoding');
    const parts = text.split('\0');
    if (parts.length !== 3) return failure('malformed-request', 'expected authzid NUL authcid NUL password');
    const [authzid, authcid, password] = parts as [string, string, string];
    if (authcid.length === 0 || password.length === 0) return failure('malformed-request', 'empty user name or password');
    const username = prepUsername(authcid);
    if (username === null) return failure('not-authorized');
    if (authzid !== '' && !authzidAllowed(authzid, username, this.#opts.domain)) return failure('invalid-authzid');
    const creds = await this.#opts.lookup(username);
    if (creds === null) {
      // Spend the time a stored user would cost, so the answer time does not tell that the user is unknown.
      await this.#hashing(() => makeScramCredentials(password, 'sha256', this.#opts.iterations ?? 4096));
      return failure('not-authorized');
    }
    if (!(await this.#hashing(() => verifyPassword(password, creds)))) return failure('not-authorized');
    return { kind: 'success', username };
  }
}
