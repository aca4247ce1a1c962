// The validated, frozen configuration. Keys keep their TOML spelling so an
// option reads the same in the file, in the docs and in the code.

export type TlsMode = 'starttls' | 'starttls_required' | 'tls';

export interface C2STlsConfig {
  mode: TlsMode;
  /** Absolute paths (resolved against the config file's directory). */
  certfile: string;
  keyfile: string;
}

export interface C2SListenerConfig {
  port: number;
  ip_address: string;
  /** Bytes; 0 means no limit. */
  max_stanza_size: number;
  /** Name of a [shaper.NAME] section, or "none". */
  shaper: string;
  tls?: C2STlsConfig;
}

export interface PrometheusHandlerConfig {
  host: string;
  path: string;
}

export interface HttpListenerConfig {
  port: number;
  ip_address: string;
  handlers: {
    mongoose_prometheus_handler: PrometheusHandlerConfig[];
  };
}

export type SaslMechanismName = 'scram_sha256' | 'scram_sha1' | 'plain';

export interface AuthConfig {
  methods: string[];
  sasl_mechanisms: SaslMechanismName[];
  password: { format: 'scram' | 'plain' };
  scram_iterations: number;
  internal?: Record<string, never>;
}

export interface GeneralConfig {
  hosts: string[];
  loglevel: 'none' | 'emergency' | 'alert' | 'critical' | 'error' | 'warning' | 'notice' | 'info' | 'debug' | 'all';
  default_server_domain: string;
  /** Absolute path. */
  data_dir: string;
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
  listen: { c2s: C2SListenerConfig[]; http: HttpListenerConfig[] };
  auth: AuthConfig;
  shaper: Record<string, ShaperConfig>;
  outgoing_pools: { http: Record<string, import('../outgoing/types.ts').HttpPoolConfig> };
  /** Validated options of each enabled module, by module name. */
  modules: Record<string, unknown>;
  /** Things worth telling the operator that are not errors (e.g. a plaintext listener on a public address). */
  warnings: string[];
}
