// The client side of SCRAM (RFC 5802), for SHA-1 and SHA-256 (RFC 7677):
// @xmpp/client 0.14 only knows SCRAM-SHA-1, and the tests also want to see
// the server's final message, which the library does not expose.
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';

export type ScramHash = 'sha1' | 'sha256';

const LENGTH: Record<ScramHash, number> = { sha1: 20, sha256: 32 };

/** RFC 5802 §5.1: "=" and "," in a username are written =3D and =2C. */
function saslname(user: string): string {
  return user.replace(/=/g, '=3D').replace(/,/g, '=2C');
}

function attrs(msg: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const part of msg.split(',')) {
    const i = part.indexOf('=');
    if (i > 0) m.set(part.slice(0, i), part.slice(i + 1));
  }
  return m;
}

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.alloc(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

export class ScramClient {
  readonly hash: ScramHash;
  readonly #user: string;
  readonly #password: string;
  readonly #nonce = randomBytes(18).toString('base64');
  #clientFirstBare = '';
  #serverSignature: Buffer | null = null;

  constructor(hash: ScramHash, user: string, password: string) {
    this.hash = hash;
    this.#user = user;
    this.#password = password;
  }

  /** client-first-message, without channel binding ("n,,"). */
  first(): string {
    this.#clientFirstBare = `n=${saslname(this.#user)},r=${this.#nonce}`;
    return 'n,,' + this.#clientFirstBare;
  }

  /** client-final-message for the server-first-message. */
  final(serverFirst: string): string {
    const a = attrs(serverFirst);
    const nonce = a.get('r') ?? '';
    if (!nonce.startsWith(this.#nonce)) throw new Error('the server nonce does not extend the client nonce');
    const salt = Buffer.from(a.get('s') ?? '', 'base64');
    const iterations = Number(a.get('i'));
    const salted = pbkdf2Sync(this.#password, salt, iterations, LENGTH[this.hash], this.hash);
    const clientKey = createHmac(this.hash, salted).update('Client Key').digest();
    const storedKey = createHash(this.hash).update(clientKey).digest();
    const serverKey = createHmac(this.hash, salted).update('Server Key').digest();
    const withoutProof = `c=${Buffer.from('n,,').toString('base64')},r=${nonce}`;
    const authMessage = `${this.#clientFirstBare},${serverFirst},${withoutProof}`;
    const clientSignature = createHmac(this.hash, storedKey).update(authMessage).digest();
    this.#serverSignature = createHmac(this.hash, serverKey).update(authMessage).digest();
    return `${withoutProof},p=${xor(clientKey, clientSignature).toString('base64')}`;
  }

  /** True when the server-final-message proves the server knew the password's ServerKey. */
  verify(serverFinal: string): boolean {
    const v = attrs(serverFinal).get('v');
    if (v === undefined || this.#serverSignature === null) return false;
    const got = Buffer.from(v, 'base64');
    return got.length === this.#serverSignature.length && timingSafeEqual(got, this.#serverSignature);
  }
}

/**
 * SCRAM-SHA-256 as a mechanism of the saslmechanisms factory @xmpp/client
 * uses, so that the library can log in with it. Data passes as binary strings
 * (what atob/btoa produce).
 */
export class ScramSha256Mechanism {
  name = 'SCRAM-SHA-256';
  clientFirst = true;
  #scram: ScramClient | null = null;
  #serverFirst: string | null = null;

  response(cred: { username: string; password: string }): string {
    if (this.#scram === null) {
      this.#scram = new ScramClient('sha256', cred.username, cred.password);
      return this.#scram.first();
    }
    if (this.#serverFirst === null) throw new Error('no server-first-message yet');
    return this.#scram.final(this.#serverFirst);
  }

  challenge(data: string): this {
    this.#serverFirst = Buffer.from(data, 'latin1').toString('utf8');
    return this;
  }
}
