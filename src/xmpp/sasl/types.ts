// The contract between a SASL mechanism and the stream that carries it
// (RFC 6120 §6.4): the stream decodes base64 and hands raw bytes to step().

/** SCRAM keys of one hash (RFC 5802 §3), as a store keeps them. */
export interface ScramCredentials {
  /** Base64 salt. */
  salt: string;
  iterations: number;
  /** Base64 StoredKey and ServerKey (RFC 5802 §3). */
  storedKey: string;
  serverKey: string;
}

/** What is kept for a user: never the password itself unless `password.format = "plain"`. */
export interface StoredCredentials {
  plain?: string;
  sha1?: ScramCredentials;
  sha256?: ScramCredentials;
}

export type SaslMechanismName = 'PLAIN' | 'SCRAM-SHA-1' | 'SCRAM-SHA-256';

/** RFC 6120 §6.5 failure conditions a mechanism can produce. */
export type SaslFailureCondition =
  | 'not-authorized'
  | 'malformed-request'
  | 'invalid-authzid'
  | 'invalid-mechanism'
  | 'temporary-auth-failure'
  | 'incorrect-encoding';

export type SaslStep =
  | { kind: 'challenge'; data: Buffer }
  /** `username` is the nodeprep'd localpart; `data` goes in <success/> (RFC 6120 §6.3.10). */
  | { kind: 'success'; username: string; data?: Buffer }
  | { kind: 'failure'; condition: SaslFailureCondition; text?: string };

export interface SaslServer {
  readonly mechanism: SaslMechanismName;
  /** One round; `null` when the client sent no initial response. Never throws. */
  step(response: Buffer | null): Promise<SaslStep>;
}

export interface SaslOptions {
  /** The host the client authenticates to; authzids are checked against it. */
  domain: string;
  /** Credentials of a (nodeprep'd) localpart on `domain`, or null when there is no such user. */
  lookup(username: string): Promise<StoredCredentials | null>;
  /**
   * Iteration count announced when the server derives SCRAM keys itself (an
   * unknown user, or a user stored in plain text). Set it to the configured
   * count so that unknown users look like real ones. Default 4096.
   */
  iterations?: number;
  /**
   * Key for the salts made up for unknown users, so they are stable but not
   * predictable. Default: random per process.
   */
  secret?: Buffer;
  /**
   * Runs one piece of password hashing (PBKDF2); the caller may queue it to
   * bound how much runs at once, or refuse it (a rejection fails the step
   * with temporary-auth-failure). Default: at once.
   */
  hashing?: <T>(work: () => Promise<T>) => Promise<T>;
}
