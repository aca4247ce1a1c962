// The validated, frozen configuration. Keys keep their TOML spelling so an
// option reads the same in the file, in the docs and in the code. An option
// with a default is always present (the schema fills it in); an optional
// field is one that has no default and means something when absent.
import type { IgnoredOption } from './schema.ts';
import type { MissingFeature } from './mongooseim.ts';
import type { AccessClause, AclPattern } from './access.ts';

export type TlsMode = 'starttls' | 'starttls_required' | 'tls';

export interface C2STlsConfig {
  mode: TlsMode;
  /**
   * Absolute paths (resolved against the config file's directory). Without
   * certfile and keyfile in the file, <data_dir>/cert.pem and key.pem.
   */
  certfile: string;
  keyfile: string;
  /** True when the file gives no certfile and keyfile: Petrel makes a self-signed certificate for general.hosts there. */
  self_signed: boolean;
  /** Milliseconds a TLS handshake (direct or after STARTTLS) may take; Petrel's own option. */
  handshake_timeout: number;
}

export interface C2SListenerConfig {
  port: number;
  ip_address: string;
  /** Bytes; 0 means no limit. */
  max_stanza_size: number;
  /** Name of a [shaper.NAME] section, of an access rule giving shaper names, or "none". */
  shaper: string;
  /** Name of the access rule deciding who may open a session ("all": anyone). */
  access: string;
  tls?: C2STlsConfig;
  // Limits against hostile or broken clients; 0 means no limit where noted.
  /** MongooseIM's: ms the server waits for the client at each step before binding (0 = no limit). */
  state_timeout: number;
  /** Bytes of one stanza (and of the stream header) before authentication. */
  max_stanza_size_before_auth: number;
  /** Elements in one stanza before authentication. */
  max_elements_before_auth: number;
  /** Element nesting below the stream root. */
  max_element_depth: number;
  /** Failed SASL attempts on one connection before it is closed. */
  max_auth_failures: number;
  /** Bytes waiting to be sent to a client that is not reading, past which it is disconnected. */
  max_output_buffer: number;
  /** ms without a completed write to a client, while output waits, before it is disconnected (0 = no limit). */
  send_timeout: number;
  /** ms from connecting until a resource is bound, all steps and restarts together (0 = no limit). */
  negotiation_timeout: number;
  /** Bytes of one read a bound session handles per turn of the event loop. */
  input_slice: number;
  /** A bound session's stanzas waiting to be routed before its input stops being read. */
  routing_backlog: number;
  /** A user whose sessions together read more than this many times the other users' mean rate is a heavy sender (0 = never). */
  heavy_sender_factor: number;
  /** Bytes per second below which a user is never a heavy sender. */
  heavy_sender_min_rate: number;
  /** Whether clients on other machines may authenticate over an unencrypted stream; Petrel's own option. */
  allow_plaintext_auth: boolean;
}

/**
 * What the config layer knows of a [[listen.http]] table: where it listens.
 * The table's full shape (TLS, transport, handlers) is HttpListenerConfig in
 * src/http/types.ts, produced by the spec the HTTP layer hands in.
 */
export interface HttpListenerAddress {
  port: number;
  ip_address: string;
}

export type SaslMechanismName = 'scram_sha256' | 'scram_sha1' | 'plain';

export interface AuthConfig {
  /** One method: "internal" (the embedded store) or "rdbms" (PostgreSQL). */
  methods: string[];
  sasl_mechanisms: SaslMechanismName[];
  password: { format: 'scram' | 'plain' };
  scram_iterations: number;
  internal?: Record<string, never>;
  /** Accounts in PostgreSQL ([outgoing_pools.rdbms.default]). */
  rdbms?: Record<string, never>;
}

export interface GeneralConfig {
  hosts: string[];
  loglevel: 'none' | 'emergency' | 'alert' | 'critical' | 'error' | 'warning' | 'notice' | 'info' | 'debug' | 'all';
  default_server_domain: string;
  /** Absolute path. */
  data_dir: string;
  /** Bound sessions per account; a new one replaces the oldest (0 = no limit). */
  max_user_sessions: number;
  /** Failed logins from one address within an hour before it is banned (0 = no limit). */
  max_auth_failures_per_ip: number;
  /** ms an address stays banned. */
  auth_ban_duration: number;
  /** Failed logins for one account within an hour before its logins are refused for a while (0 = no limit). */
  max_auth_failures_per_account: number;
  /** ms an account's logins stay refused. */
  account_lock_duration: number;
  /** Password hashing (PBKDF2) runs at once, server-wide (0 = no limit). */
  max_concurrent_password_hashing: number;
  /** Open c2s connections, all listeners together (0 = no limit). */
  max_c2s_connections: number;
  /** Open c2s connections from one address (IPv6: one /64) (0 = no limit). */
  max_c2s_connections_per_address: number;
  /**
   * Refuse user names with letters of more than one script ("аlice" with a
   * Cyrillic а) at `petrel register` and at login.
   */
  refuse_mixed_script_localparts: boolean;
  /** How log lines are written; absent: "text" on a terminal, "json" otherwise. */
  log_format?: 'json' | 'text';
  /** MongooseIM's: "mnesia", the local session table (default); "cets", the table shared by the cluster's nodes. */
  sm_backend: 'mnesia' | 'cets';
}

/** [internal_databases]: MongooseIM's; "cets" is how the cluster's nodes find each other. */
export interface InternalDatabasesConfig {
  mnesia?: Record<string, never>;
  cets?: { backend: 'rdbms'; cluster_name: string };
}

/** [cluster]: Petrel's own; read when general.sm_backend = "cets". */
export interface ClusterConfig {
  /** NATS URLs, comma-separated. */
  bus?: string;
  node_name?: string;
  advertised_address?: string;
  /** ms between heartbeats. */
  heartbeat_interval: number;
  /** ms after which a node without a heartbeat is dead. */
  heartbeat_timeout: number;
  /** ms a cross-node delivery waits for its acknowledgement. */
  request_timeout: number;
  /** Most stanzas in one cross-node delivery request. */
  delivery_batch_size: number;
  /** Cross-node deliveries kept per destination node until it says they are safe (0: none kept). */
  delivery_keep_max: number;
  /** Their bytes (serialised) per destination node. */
  delivery_keep_bytes: number;
}

export interface ShaperConfig {
  /** Bytes per second. */
  max_rate: number;
}

export interface PetrelConfig {
  /** Absolute path of the file this came from ("" for the built-in default). */
  configPath: string;
  /** Directory relative paths were resolved against. */
  configDir: string;
  general: GeneralConfig;
  listen: { c2s: C2SListenerConfig[]; http: HttpListenerAddress[] };
  auth: AuthConfig;
  shaper: Record<string, ShaperConfig>;
  outgoing_pools: {
    http: Record<string, import('../outgoing/types.ts').HttpPoolConfig>;
    rabbit: Record<string, import('../outgoing/types.ts').RabbitPoolConfig>;
    /** Present when an [outgoing_pools.rdbms.TAG] table is. */
    rdbms?: Record<string, import('../outgoing/types.ts').RdbmsPoolConfig>;
  };
  /** Validated options of each enabled module, by module name. */
  modules: Record<string, unknown>;
  /** Things worth telling the operator that are not errors (e.g. a plaintext listener on a public address). */
  warnings: string[];
  /** Compatibility options set in the file, which Petrel accepts and does not use (ignoredWarning words each). */
  ignored: IgnoredOption[];
  /** MongooseIM features the file configures that Petrel does not implement (missingWarning words each). */
  missing: MissingFeature[];
  /** [acl]: access classes by name. */
  acl: Record<string, AclPattern[]>;
  /** [access]: access rules by name. */
  access: Record<string, AccessClause[]>;
  /** [internal_databases] (absent when the loader was given no spec for it). */
  internal_databases?: InternalDatabasesConfig;
  /** [cluster] (absent when the loader was given no spec for it). */
  cluster?: ClusterConfig;
}
