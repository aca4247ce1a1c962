// Outgoing connection pools, configured as [outgoing_pools.<type>.<tag>].
import type { PgPoolSettings } from '../storage/postgres.ts';

export interface HttpPoolTlsConfig {
  /**
   * "selfsigned_peer" is MongooseIM's spelling; "selfsigned" is accepted as
   * the same thing. Both verify the chain against `cacertfile`, which may
   * hold the self-signed server certificate itself.
   */
  verify_mode: 'peer' | 'selfsigned' | 'selfsigned_peer' | 'none';
  cacertfile?: string;
  certfile?: string;
  keyfile?: string;
  /** Passphrase of the key in `keyfile`. */
  password?: string;
  /** OpenSSL cipher list. */
  ciphers?: string;
  /** Allowed protocol versions ("tlsv1.2", "tlsv1.3"). */
  versions?: string[];
  /** Absolute paths of PEM certificate revocation lists. */
  crl_files: string[];
  /** false: a failed verification is logged by the caller and the connection kept (MongooseIM's option). */
  disconnect_on_failure: boolean;
  server_name_indication: { enabled: boolean; host?: string; protocol: 'default' | 'https' };
}

export interface HttpPoolConfig {
  scope: 'global' | 'host_type' | 'host';
  /** Connections kept open to the host. */
  workers: number;
  strategy: 'best_worker' | 'random_worker' | 'next_worker' | 'available_worker' | 'next_available_worker';
  /** Milliseconds a caller waits for a free worker. */
  call_timeout: number;
  /** Requests allowed to wait per connection before new ones are refused (best_worker only). */
  max_worker_queue_len?: number;
  connection: {
    /** "http[s]://host[:port]" */
    host: string;
    path_prefix: string;
    /** Milliseconds. */
    request_timeout: number;
    /** Requests in flight at once on one connection (HTTP/1.1 pipelining); 1: one at a time. */
    pipelining?: number;
    tls?: HttpPoolTlsConfig;
  };
}

/** An [outgoing_pools.rabbit.TAG] pool (MongooseIM's names and defaults). */
export interface RabbitPoolConfig {
  scope: 'global' | 'host_type' | 'host';
  /** Publishes in flight at once on the pool's connection. */
  workers: number;
  strategy: HttpPoolConfig['strategy'];
  /** Milliseconds a publish waits for the broker's confirmation (confirms_enabled). */
  call_timeout: number;
  /** Accepted for compatibility: events wait in the outbox, not in worker queues. */
  max_worker_queue_len?: number;
  connection: {
    host: string;
    port: number;
    username: string;
    password: string;
    virtual_host: string;
    confirms_enabled: boolean;
    tls?: HttpPoolTlsConfig;
    reconnect: { attempts: number; delay: number };
  };
}

/** TLS of a PostgreSQL connection (MongooseIM's pgsql TLS options, the subset Petrel honours). */
export type RdbmsTlsConfig = NonNullable<PgPoolSettings['connection']['tls']>;

/**
 * An [outgoing_pools.rdbms.TAG] pool: PostgreSQL only. What the store needs
 * to connect is PgPoolSettings; the rest is accepted for compatibility.
 */
export interface RdbmsPoolConfig extends PgPoolSettings {
  scope: 'global' | 'host_type' | 'host';
  /** Accepted for compatibility: a query takes whichever connection is free. */
  strategy: HttpPoolConfig['strategy'];
  connection: PgPoolSettings['connection'] & { driver: 'pgsql' };
}

/** Every way an HTTP request can end, reduced to a fixed set. */
export type HttpOutcome =
  /** A 2xx, given as soon as its status and headers arrive: `body` is always "" (the rest of the answer is read and dropped). */
  | { kind: 'ok'; status: number; headers: Record<string, string | string[] | undefined>; body: string; timeMs: number }
  | { kind: 'http_status'; status: number; headers: Record<string, string | string[] | undefined>; body: string; timeMs: number }
  | { kind: 'timeout'; message: string }
  | { kind: 'refused'; message: string }
  | { kind: 'tls'; message: string }
  | { kind: 'error'; message: string };

/** Request headers as a record, or as name/value pairs when a name repeats. */
export type HttpHeaders = Record<string, string> | ReadonlyArray<readonly [string, string]>;

export interface HttpPool {
  readonly tag: string;
  /** "scheme://host:port" + path prefix, for logs and URL building. */
  readonly baseUrl: string;
  /** Connections the pool keeps (`workers`): how many requests may be in flight at once. */
  readonly workers: number;
  /** Full URL the pool sends to for a handler `path` (MongooseIM's joining rules). */
  url(path: string): string;
  /** Never rejects: every failure becomes an HttpOutcome. */
  post(path: string, headers: HttpHeaders, body: string | Uint8Array): Promise<HttpOutcome>;
  close(): Promise<void>;
}

export interface OutgoingPools {
  http(tag: string): HttpPool | undefined;
  /** A RabbitMQ pool's settings: its connection is opened by whoever publishes (the event pusher's sender, in its thread). */
  rabbit(tag: string): RabbitPoolConfig | undefined;
  close(): Promise<void>;
}
