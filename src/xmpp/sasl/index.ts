// Server-side SASL (RFC 4422) for XMPP (RFC 6120 §6): PLAIN, SCRAM-SHA-1, SCRAM-SHA-256.

import { PlainServer } from './plain.ts';
import { ScramServer } from './scram.ts';
import type { SaslMechanismName, SaslOptions, SaslServer } from './types.ts';

export type { SaslFailureCondition, SaslMechanismName, SaslOptions, SaslServer, SaslStep } from './types.ts';
export { makeScramCredentials, makeStoredCredentials, verifyPassword } from './credentials.ts';

/** Mechanisms in the server's order of preference (strongest first), as offered in stream features. */
export const SASL_MECHANISMS: readonly SaslMechanismName[] = ['SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN'];

/** A fresh exchange; one per authentication attempt. */
export function createSaslServer(name: SaslMechanismName, opts: SaslOptions): SaslServer {
  switch (name) {
    case 'PLAIN':
      return new PlainServer(opts);
    case 'SCRAM-SHA-1':
    case 'SCRAM-SHA-256':
      return new ScramServer(name, opts);
    default:
      throw new TypeError(`unknown SASL mechanism ${String(name)}`);
  }
}

/** Narrows a mechanism name from the wire; unknown names get <invalid-mechanism/> from the caller. */
export function isSaslMechanism(name: string): name is SaslMechanismName {
  return name === 'PLAIN' || name === 'SCRAM-SHA-1' || name === 'SCRAM-SHA-256';
}
