// SCRAM-SHA-1 (RFC 5802) and SCRAM-SHA-256 (RFC 7677), server side, without
// channel binding (the -PLUS variants are not offered).
//
//   C: gs2-header client-first-message-bare        n,,n=user,r=cnonce
//   S: server-first-message                        r=cnonce+snonce,s=salt,i=4096
//   C: client-final-message                        c=biws,r=cnonce+snonce,p=proof
//   S: server-final-message (in <success/>)        v=signature

import { randomBytes, randomUUID } from 'node:crypto';
import { DEFAULT_ITERATIONS, HASH_LENGTH, derivedSalt, digest, hmac, keysFromSalted, safeEqual, saltedPassword } from './credentials.ts';
import type { ScramHash } from './credentials.ts';
import { authzidAllowed, decodeUtf8, failure, prepUsername } from './common.ts';
import type { SaslOptions, SaslServer, SaslStep } from './types.ts';

/** printable = %x21-2B / %x2D-7E (RFC 5802 §7): visible ASCII except ','. */
const NONCE_RE = /^[\x21-\x2b\x2d-\x7e]+$/;
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

class Malformed {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
}

/** saslname (RFC 5802 §7): ',' and '=' travel as "=2C" and "=3D"; any other '=' is malformed. */
function decodeSaslname(s: string): string | Malformed {
  if (!s.includes('=')) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (ch !== '=') { out += ch; continue; }
    const esc = s.slice(i + 1, i + 3);
    if (esc === '2C') out += ',';
    else if (esc === '3D') out += '=';
    else return new Malformed('bad escape in a name');
    i += 2;
  }
  return out;
}

interface Keys {
  storedKey: Buffer;
  serverKey: Buffer;
}

/** Where the keys for the final step come from. */
type KeySource =
  | { kind: 'stored'; keys: Keys }
  | { kind: 'plain'; password: string }
  /** No such user (or no usable credentials): the proof can never verify. */
  | { kind: 'none' };

export class ScramServer implements SaslServer {
  readonly mechanism: 'SCRAM-SHA-1' | 'SCRAM-SHA-256';
  #hash: ScramHash;
  #opts: SaslOptions;
  #state: 'initial' | 'challenged' | 'first-done' | 'done' = 'initial';
  #busy = false;
  // Filled by the client-first message.
  #gs2Header = '';
  #clientFirstBare = '';
  #serverFirst = '';
  #nonce = '';
  #username = '';
  #salt: Buffer = Buffer.alloc(0);
  #iterations = 0;
  #source: KeySource = { kind: 'none' };

  constructor(mechanism: 'SCRAM-SHA-1' | 'SCRAM-SHA-256', opts: SaslOptions) {
    this.mechanism = mechanism;
    this.#hash = mechanism === 'SCRAM-SHA-1' ? 'sha1' : 'sha256';
    this.#opts = opts;
  }

  async step(response: Buffer | null): Promise<SaslStep> {
    if (this.#busy) return failure('malformed-request', 'a step is already in progress');
    if (this.#state === 'done') return failure('malformed-request', 'authentication already finished');
    this.#busy = true;
    try {
      if (this.#state === 'initial' && response === null) {
        // SCRAM is client-first: an empty challenge asks for the first message (RFC 4422 §5).
        this.#state = 'challenged';
        return { kind: 'challenge', data: Buffer.alloc(0) };
      }
      if (response === null) {
        this.#state = 'done';
        return failure('malformed-request', 'empty response');
      }
      const text = decodeUtf8(response);
      if (text === null || text.includes('\0')) {
        this.#state = 'done';
        return failure('incorrect-encoding');
      }
      if (this.#state === 'first-done') {
        this.#state = 'done';
        return await this.#clientFinal(text);
      }
      const r = await this.#clientFirst(text);
      this.#state = r.kind === 'challenge' ? 'first-done' : 'done';
      return r;
    } catch {
      this.#state = 'done';
      return failure('temporary-auth-failure');
    } finally {
      this.#busy = false;
    }
  }

  async #clientFirst(msg: string): Promise<SaslStep> {
    // gs2-header = gs2-cbind-flag "," [ authzid ] "," (RFC 5802 §7)
    if (msg.startsWith('p=')) return failure('not-authorized', 'channel binding is not supported');
    // "y" means the client could bind but believes the server cannot: true here, so it is accepted (§6).
    if (!msg.startsWith('n,') && !msg.startsWith('y,')) return failure('malformed-request', 'bad gs2 header');
    const comma = msg.indexOf(',', 2);
    if (comma === -1) return failure('malformed-request', 'bad gs2 header');
    const authzField = msg.slice(2, comma);
    let authzid = '';
    if (authzField !== '') {
      if (!authzField.startsWith('a=')) return failure('malformed-request', 'bad authzid');
      const a = decodeSaslname(authzField.slice(2));
      if (a instanceof Malformed) return failure('malformed-request', a.text);
      authzid = a;
    }
    this.#gs2Header = msg.slice(0, comma + 1);
    const bare = msg.slice(comma + 1);
    const fields = bare.split(',');
    if (fields[0]!.startsWith('m=')) return failure('malformed-request', 'mandatory extensions are not supported');
    if (fields.length < 2 || !fields[0]!.startsWith('n=') || !fields[1]!.startsWith('r=')) {
      return failure('malformed-request', 'expected n= and r=');
    }
    const authcid = decodeSaslname(fields[0]!.slice(2));
    if (authcid instanceof Malformed) return failure('malformed-request', authcid.text);
    if (authcid === '') return failure('malformed-request', 'empty user name');
    const clientNonce = fields[1]!.slice(2);
    if (!NONCE_RE.test(clientNonce)) return failure('malformed-request', 'bad nonce');

    const username = prepUsername(authcid);
    if (username === null) return failure('not-authorized');
    if (authzid !== '' && !authzidAllowed(authzid, username, this.#opts.domain)) return failure('invalid-authzid');

    const creds = await this.#opts.lookup(username);
    const stored = creds?.[this.#hash];
    if (stored !== undefined) {
      this.#salt = Buffer.from(stored.salt, 'base64');
      this.#iterations = stored.iterations;
      this.#source = { kind: 'stored', keys: { storedKey: Buffer.from(stored.storedKey, 'base64'), serverKey: Buffer.from(stored.serverKey, 'base64') } };
    } else {
      // A user stored in plain text, or unknown: a salt derived from the name
      // keeps the answer stable across attempts, so it cannot be told apart
      // from a stored one by asking twice.
      this.#salt = derivedSalt(this.#opts.secret, username, this.#opts.domain);
      this.#iterations = this.#opts.iterations ?? DEFAULT_ITERATIONS;
      this.#source = creds?.plain !== undefined ? { kind: 'plain', password: creds.plain } : { kind: 'none' };
    }
    this.#username = username;
    this.#clientFirstBare = bare;
    this.#nonce = clientNonce + randomBytes(18).toString('base64');
    this.#serverFirst = `r=${this.#nonce},s=${this.#salt.toString('base64')},i=${this.#iterations}`;
    return { kind: 'challenge', data: Buffer.from(this.#serverFirst, 'utf8') };
  }

  async #clientFinal(msg: string): Promise<SaslStep> {
    // client-final-message = channel-binding "," nonce ["," extensions] "," proof
    const p = msg.lastIndexOf(',p=');
    if (p === -1) return failure('malformed-request', 'no proof');
    const withoutProof = msg.slice(0, p);
    const proofB64 = msg.slice(p + 3);
    const fields = withoutProof.split(',');
    if (fields.length < 2 || !fields[0]!.startsWith('c=') || !fields[1]!.startsWith('r=')) {
      return failure('malformed-request', 'expected c= and r=');
    }
    const cbind = fields[0]!.slice(2);
    if (!BASE64_RE.test(cbind) || !BASE64_RE.test(proofB64) || proofB64 === '') return failure('incorrect-encoding');
    // Without channel binding, c= carries exactly the gs2 header of the first message (§7).
    if (!Buffer.from(cbind, 'base64').equals(Buffer.from(this.#gs2Header, 'utf8'))) {
      return failure('not-authorized', 'channel binding data does not match');
    }
    // The nonce must be the one this server made, whole: a replayed or altered one fails.
    if (fields[1]!.slice(2) !== this.#nonce) return failure('not-authorized');
    const proof = Buffer.from(proofB64, 'base64');

    const keys = await this.#keys();
    const authMessage = `${this.#clientFirstBare},${this.#serverFirst},${withoutProof}`;
    // ClientKey = ClientProof XOR ClientSignature; it must hash to StoredKey (RFC 5802 §3).
    const clientSignature = hmac(this.#hash, keys.storedKey, authMessage);
    if (proof.length !== clientSignature.length) return failure('not-authorized');
    const clientKey = Buffer.alloc(proof.length);
    for (let i = 0; i < proof.length; i++) clientKey[i] = proof[i]! ^ clientSignature[i]!;
    const ok = safeEqual(digest(this.#hash, clientKey), keys.storedKey);
    if (!ok || this.#source.kind === 'none') return failure('not-authorized');
    const serverSignature = hmac(this.#hash, keys.serverKey, authMessage);
    return { kind: 'success', username: this.#username, data: Buffer.from('v=' + serverSignature.toString('base64'), 'utf8') };
  }

  async #keys(): Promise<Keys> {
    const src = this.#source;
    if (src.kind === 'stored') return src.keys;
    if (src.kind === 'plain') {
      const work = () => saltedPassword(src.password, this.#salt, this.#iterations, this.#hash);
      const h = this.#opts.hashing;
      return keysFromSalted(this.#hash, await (h === undefined ? work() : h(work)));
    }
    // Keys nobody knows: the comparison runs as for a real user and fails.
    const len = HASH_LENGTH[this.#hash];
    return { storedKey: digest(this.#hash, Buffer.from(randomUUID())).subarray(0, len), serverKey: randomBytes(len) };
  }
}
