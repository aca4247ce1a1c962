// Standard Webhooks signatures (https://www.standardwebhooks.com/, "Signature
// scheme"): each attempt carries `webhook-timestamp` (seconds, set when the
// attempt is made) and `webhook-signature`, a space-separated list of
// `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`, one per secret,
// so that a receiver can rotate secrets without losing a request. A secret is
// written `whsec_<base64 key>`; the key is the decoded part.
import { createHmac } from 'node:crypto';

export const SECRET_PREFIX = 'whsec_';

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** The key of a `whsec_` secret, or an error message saying what is wrong with it. */
export function parseSecret(secret: string): Buffer | string {
  if (!secret.startsWith(SECRET_PREFIX)) return `a secret must start with "${SECRET_PREFIX}" followed by its key in base64`;
  const b64 = secret.slice(SECRET_PREFIX.length);
  if (b64 === '' || !BASE64.test(b64) || b64.length % 4 !== 0) return `the part after "${SECRET_PREFIX}" is not base64 (standard alphabet, padded)`;
  const key = Buffer.from(b64, 'base64');
  if (key.length === 0) return 'the key is empty';
  return key;
}

export interface Signer {
  /** The two headers of one attempt, for this id and body, at `nowMs`. */
  headers(webhookId: string, body: string | Uint8Array, nowMs: number): [[string, string], [string, string]];
}

export function createSigner(keys: readonly Uint8Array[]): Signer {
  return {
    headers(webhookId, body, nowMs) {
      const ts = String(Math.floor(nowMs / 1000));
      const prefix = `${webhookId}.${ts}.`;
      const sigs = keys.map((k) => 'v1,' + createHmac('sha256', k).update(prefix).update(body).digest('base64'));
      return [
        ['webhook-timestamp', ts],
        ['webhook-signature', sigs.join(' ')],
      ];
    },
  };
}

const SIGNATURE_HEADERS = new Set(['webhook-timestamp', 'webhook-signature']);

/** The stored headers with this attempt's timestamp and signature (replacing any the callback set). */
export function signedHeaders(signer: Signer, headers: ReadonlyArray<readonly [string, string]>, webhookId: string, body: string | Uint8Array, nowMs: number): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [k, v] of headers) if (!SIGNATURE_HEADERS.has(k.toLowerCase())) out.push([k, v]);
  out.push(...signer.headers(webhookId, body, nowMs));
  return out;
}
