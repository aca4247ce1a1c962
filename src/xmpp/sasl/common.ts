// Pieces shared by the mechanisms: strict UTF-8, user names, authorization identities.

import { makeJid, tryParseJid } from '../jid.ts';
import { nodeprep, saslprep } from '../stringprep.ts';
import type { SaslFailureCondition, SaslStep } from './types.ts';

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The text of a SASL message, or null when it is not valid UTF-8 (RFC 4422 §3.8 / RFC 5802 §7). */
export function decodeUtf8(data: Buffer): string | null {
  try {
    return utf8.decode(data);
  } catch {
    return null;
  }
}

/**
 * The localpart an authentication identity names: SASLprep (RFC 4013), as both
 * RFC 4616 §4 and RFC 5802 §5.1 ask, then Nodeprep so that it matches the
 * stored account. Null when it cannot name any account.
 */
export function prepUsername(authcid: string): string | null {
  try {
    const u = nodeprep(saslprep(authcid));
    return u.length === 0 || Buffer.byteLength(u) > 1023 ? null : u;
  } catch {
    return null;
  }
}

/**
 * An authorization identity is accepted only when it is the user's own bare
 * JID (RFC 6120 §6.3.8): this server does not let one account act as another.
 */
export function authzidAllowed(authzid: string, username: string, domain: string): boolean {
  const requested = tryParseJid(authzid);
  if (requested === null) return false;
  return requested.full === makeJid(username, domain).bare;
}

export function failure(condition: SaslFailureCondition, text?: string): SaslStep {
  return text === undefined ? { kind: 'failure', condition } : { kind: 'failure', condition, text };
}
