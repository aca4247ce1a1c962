// The schema of Petrel's core sections: [general], [listen], [auth] and
// [shaper]. Names, defaults and allowed values follow MongooseIM's
// configuration (src/config/mongoose_config_spec.erl and its docs), so a
// MongooseIM operator's file reads the same here; MongooseIM options that
// Petrel does not implement are rejected rather than silently ignored. Every
// default is here, so the validated config carries each value Petrel uses.
import { isIP } from 'node:net';
import { homedir } from 'node:os';
import { isAbsolute, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkCertificatePair } from './certificates.ts';
import {
  ConfigError, ErrorCollector, bool, compat, custom, describe, fail, int, list, path, section, str, validate,
  type Spec, type SectionSpec,
} from './schema.ts';
import { noteMissing, notImplemented } from './mongooseim.ts';
import { checkRule, type AccessClause } from './access.ts';
import type { AuthConfig, C2SListenerConfig, C2STlsConfig, GeneralConfig, HttpListenerAddress, ShaperConfig } from './types.ts';

const LOGLEVELS = ['none', 'emergency', 'alert', 'critical', 'error', 'warning', 'notice', 'info', 'debug', 'all'] as const;
const TLS_MODES = ['starttls', 'starttls_required', 'tls'] as const;
const SASL_MECHANISMS = ['scram_sha256', 'scram_sha1', 'plain'] as const;
const PASSWORD_FORMATS = ['scram', 'plain'] as const;
/** Auth methods Petrel implements: the embedded store, and PostgreSQL through [outgoing_pools.rdbms.default]. */
const AUTH_METHODS = ['internal', 'rdbms'] as const;
/** MongooseIM's other auth methods: named so the error can say they are not implemented. */
const MONGOOSEIM_ONLY_AUTH_METHODS = ['anonymous', 'dummy', 'external', 'http', 'jwt', 'ldap', 'pki'];
const IMPLEMENTED = 'only "internal" and "rdbms" are';

/** Applied in the [auth] process step, as the option has two spellings. */
const DEFAULT_SCRAM_ITERATIONS = 10000;
/** RFC 7677 §4: the iteration count a server announces SHOULD be at least 4096. */
const RECOMMENDED_MIN_SCRAM_ITERATIONS = 4096;

/** True for addresses only this machine can reach. */
function isLoopback(ip: string): boolean {
  const a = ip.toLowerCase();
  return a === 'localhost' || a === '::1' || a.startsWith('127.') || a.startsWith('::ffff:127.');
}

function isWildcard(ip: string): boolean {
  return ip === '0.0.0.0' || ip === '::';
}

// ---------------------------------------------------------------------------
// [general]

/**
 * A served domain. Domains are compared case-insensitively in XMPP (RFC 7622
 * §3.2), so they are stored lower-cased; full IDNA2008 mapping is left to the
 * JID layer, this only rejects what can never be a domain part.
 */
function domainName(value: unknown, p: string): string {
  if (typeof value !== 'string') fail(p, `expected a domain name (a string), got ${describe(value)}`);
  if (value === '') fail(p, 'must not be empty');
  const d = value.normalize('NFKC').toLowerCase();
  if (/[\s@/"'<>&\\]/u.test(d) || /\p{Cc}/u.test(d)) fail(p, `${JSON.stringify(value)} is not a valid domain name`);
  if (d.startsWith('.') || d.endsWith('.') || d.includes('..')) fail(p, `${JSON.stringify(value)} is not a valid domain name`);
  if (Buffer.byteLength(d) > 1023) fail(p, 'a domain name is at most 1023 bytes (RFC 7622 §3.2)');
  return d;
}

/** MongooseIM's int_or_infinity: "infinity" means no limit and is stored as 0. */
export function intOrInfinity(min: number, dflt: number): Spec {
  const n = int({ min });
  return custom(
    (value, p, ctx) => {
      if (value === 'infinity') return 0;
      if (typeof value === 'string') fail(p, `expected an integer of at least ${min} or "infinity", got ${describe(value)}`);
      return validate(n, value, p, ctx);
    },
    { default: dflt },
  );
}

/**
 * general.data_dir when the file sets none. Run from a git checkout, Petrel
 * keeps its state in the checkout's data/ (ignored by git); run from an
 * installed package (its files lie under a node_modules directory, which an
 * upgrade replaces and which may belong to root), in the user's data
 * directory: $XDG_DATA_HOME/petrel, or ~/.local/share/petrel.
 */
export function defaultDataDir(): string {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  if (!root.split(sep).includes('node_modules')) return join(root, 'data');
  const xdg = process.env.XDG_DATA_HOME;
  // The XDG base directory specification ignores a relative value.
  const base = xdg !== undefined && isAbsolute(xdg) ? xdg : join(homedir(), '.local', 'share');
  return join(base, 'petrel');
}

const generalSpec: SectionSpec = section(
  {
    hosts: list(custom(domainName), { nonEmpty: true, unique: true }),
    loglevel: str({ oneOf: LOGLEVELS, default: 'warning' }),
    default_server_domain: custom(domainName),
    // No default in the schema: defaultDataDir() depends on how Petrel is installed.
    data_dir: path(),
    // Limits against abuse; see the Security section of the README.
    max_user_sessions: intOrInfinity(1, 10),
    max_auth_failures_per_ip: intOrInfinity(1, 20),
    auth_ban_duration: int({ min: 1, default: 600_000 }),
    max_auth_failures_per_account: intOrInfinity(1, 10),
    account_lock_duration: int({ min: 1, default: 300_000 }),
    max_concurrent_password_hashing: intOrInfinity(1, 2),
    max_c2s_connections: intOrInfinity(1, 10_000),
    max_c2s_connections_per_address: intOrInfinity(1, 100),
    // Not a MongooseIM option (it has none for this).
    refuse_mixed_script_localparts: bool({ default: false }),
    // Petrel's own: how log lines are written ("text" by default on a terminal, else "json").
    log_format: str({ oneOf: ['json', 'text'] }),
    // MongooseIM's, with nothing to do in Petrel.
    host_types: custom((value, p, ctx) => {
      if (!Array.isArray(value)) fail(p, `expected an array, got ${describe(value)}`);
      if (value.length > 0) noteMissing(ctx, 'host_types', 'the domains of these host types are not served (dynamic domains are not implemented); list served domains in general.hosts', p);
      return value;
    }),
    registration_timeout: compat(custom((v) => v), 'in-band registration (mod_register) is not implemented'),
    language: compat(str(), 'Petrel\'s error texts are in English'),
    // MongooseIM's: "mnesia" is the local table; "cets" the cluster-wide one (docs/cluster.md).
    sm_backend: str({ oneOf: ['mnesia', 'cets'], default: 'mnesia' }),
    component_backend: compat(str(), 'Petrel has no external components'),
    s2s_backend: compat(str(), 'Petrel has no s2s'),
    http_server_name: compat(str(), 'Petrel sends no Server header'),
  },
  {
    required: ['hosts'],
    default: true,
    process(g: Omit<GeneralConfig, 'default_server_domain' | 'data_dir'> & { default_server_domain?: string; data_dir?: string }, p): GeneralConfig {
      const dsd = g.default_server_domain ?? g.hosts[0];
      if (!g.hosts.includes(dsd)) {
        fail(`${p}.default_server_domain`, `must be one of the hosts (${g.hosts.map((h) => JSON.stringify(h)).join(', ')}), got ${JSON.stringify(dsd)}`);
      }
      return { ...g, data_dir: g.data_dir ?? defaultDataDir(), default_server_domain: dsd };
    },
  },
);

// ---------------------------------------------------------------------------
// [listen]

/** A listener's `port`; shared with the listener specs of higher layers (src/http/config.ts). */
export const port = int({ min: 1, max: 65535 });

/** A listener's `ip_address`, without a default. */
export const ipAddressOption = custom((value, p) => {
  if (typeof value !== 'string') fail(p, `expected an IP address (a string), got ${describe(value)}`);
  if (isIP(value) === 0) fail(p, `expected an IP address such as "127.0.0.1" or "::1", got ${JSON.stringify(value)}`);
  return value;
});

const ipAddress = custom(ipAddressOption.run, { default: '0.0.0.0' });

const positiveInt = int({ min: 1 });

/** MongooseIM's int_or_infinity: "infinity" means no limit, stored as 0. */
const maxStanzaSize = custom(
  (value, p, ctx) => {
    if (value === 'infinity') return 0;
    if (typeof value === 'string') fail(p, `expected a positive integer or "infinity", got ${describe(value)}`);
    return validate(positiveInt, value, p, ctx);
  },
  { default: 262144 },
);

/**
 * The session limits every c2s transport has (TCP listeners here, the
 * WebSocket handler of [[listen.http]]), with the same names and defaults;
 * see the Security section of the README.
 */
export const c2sSessionLimitItems: Readonly<Record<string, Spec>> = {
  max_stanza_size_before_auth: int({ min: 256, default: 8192 }),
  max_elements_before_auth: int({ min: 1, default: 16 }),
  // Bounded so that code walking a stanza recursively cannot run out of stack.
  max_element_depth: int({ min: 2, max: 1000, default: 64 }),
  max_auth_failures: int({ min: 1, default: 3 }),
  max_output_buffer: int({ min: 1024, default: 1_048_576 }),
  send_timeout: intOrInfinity(1, 15_000),
  negotiation_timeout: intOrInfinity(1, 60_000),
  // Petrel's own: a bound session's routing backlog, and when a sender far above the others gets a quarter of it.
  routing_backlog: int({ min: 1, default: 32 }),
  heavy_sender_factor: intOrInfinity(2, 8),
  heavy_sender_min_rate: int({ min: 0, default: 65_536 }),
  // Petrel's own (MongooseIM has none): SASL over an unencrypted stream for clients on other machines.
  allow_plaintext_auth: bool({ default: false }),
};
/** Where the self-signed certificate of a tls table without certfile and keyfile is kept. */
export const SELF_SIGNED_CERTFILE = 'cert.pem';
export const SELF_SIGNED_KEYFILE = 'key.pem';

const c2sTlsSpec = section(
  {
    mode: str({ oneOf: TLS_MODES, default: 'starttls' }),
    // Client certificates (SASL EXTERNAL) are not implemented: Petrel asks for
    // none, which is what "none" says; a file asking for them is refused
    // rather than run without the check it expects.
    verify_mode: custom((value, p) => {
      if (value !== 'none') {
        fail(p, `client certificate verification is not implemented; only "none" is accepted, got ${describe(value)}`);
      }
      return value;
    }),
    certfile: path(),
    keyfile: path(),
    handshake_timeout: int({ min: 1, default: 10_000 }),
  },
  {
    process(t: Omit<C2STlsConfig, 'self_signed'> & { certfile?: string; keyfile?: string }, p): C2STlsConfig {
      if (t.certfile === undefined && t.keyfile === undefined) {
        // Filled in with <data_dir>/cert.pem and key.pem once data_dir is known (withSelfSignedPaths).
        return { ...t, certfile: '', keyfile: '', self_signed: true };
      }
      if (t.certfile === undefined || t.keyfile === undefined) {
        const given = t.certfile === undefined ? 'keyfile' : 'certfile';
        const lacking = given === 'certfile' ? 'keyfile' : 'certfile';
        fail(`${p}.${lacking}`, `missing, while ${given} is set: give both, or neither for the self-signed certificate Petrel makes under general.data_dir`);
      }
      checkCertificatePair(t.certfile, t.keyfile, p);
      return { ...t, certfile: t.certfile, keyfile: t.keyfile, self_signed: false };
    },
  },
);

/**
 * The listeners with the paths of the self-signed certificate filled in:
 * <data_dir>/cert.pem and <data_dir>/key.pem, made at start-up when missing.
 */
export function withSelfSignedPaths(listeners: C2SListenerConfig[], dataDir: string): void {
  for (const l of listeners) {
    if (l.tls?.self_signed !== true) continue;
    l.tls.certfile = join(dataDir, SELF_SIGNED_CERTFILE);
    l.tls.keyfile = join(dataDir, SELF_SIGNED_KEYFILE);
  }
}

const c2sListenerSpec = section(
  {
    port,
    ip_address: ipAddress,
    max_stanza_size: maxStanzaSize,
    shaper: str({ nonEmpty: true, default: 'none' }),
    // MongooseIM's: the access rule that decides who may open a session here.
    access: str({ nonEmpty: true, default: 'all' }),
    tls: c2sTlsSpec,
    // Limits against hostile or broken clients; see the Security section of the README.
    state_timeout: intOrInfinity(1, 30_000),
    // Petrel's own: bytes of a read a bound session handles per turn (a WebSocket message is always handled whole).
    input_slice: int({ min: 512, default: 8192 }),
    ...c2sSessionLimitItems,
  },
  {
    required: ['port'],
    process(l: C2SListenerConfig, p, ctx): C2SListenerConfig {
      if (l.tls === undefined && !isLoopback(l.ip_address)) {
        ctx.warnings.push(
          l.allow_plaintext_auth
            ? `${p}: listener on ${l.ip_address}:${l.port} has no tls table, so passwords and messages cross the network in plain text`
            : `${p}: listener on ${l.ip_address}:${l.port} has no tls table, so clients on other machines cannot log in (allow_plaintext_auth is false); add a [listen.c2s.tls] table`,
        );
      }
      return l;
    },
  },
);

/**
 * Without a spec for [[listen.http]] (LoadOptions.listeners.http, given by
 * the HTTP layer), an HTTP listener cannot be configured.
 */
const noHttpListeners = custom((_v, p) => fail(p, 'HTTP listeners are not available'));

/**
 * [listen]: the c2s listeners, and the HTTP listeners whose spec (each
 * `[[listen.http]]` table: TLS, transport, handlers) belongs to src/http/ and
 * is handed in, as module specs are.
 */
export function listenSpecWith(httpListener: Spec = noHttpListeners): SectionSpec {
  return section(
    {
      c2s: list(c2sListenerSpec, { default: [] }),
      http: list(httpListener, { default: [] }),
      s2s: notImplemented('s2s', 'no federation: users cannot exchange stanzas with other servers, and the s2s port is not opened'),
      component: notImplemented('listen.component', 'external components (XEP-0114) cannot connect; the port is not opened'),
      service: notImplemented('listen.service', 'external services (XEP-0114) cannot connect; the port is not opened'),
    },
    {
      default: true,
      process(raw: { c2s: C2SListenerConfig[]; http: HttpListenerAddress[] }, p) {
        const l = { c2s: raw.c2s, http: raw.http };
        // Two listeners cannot share a port on overlapping addresses (MongooseIM
        // rejects the same in mongoose_listener_config:verify_unique_listeners).
        const taken: { ip: string; port: number; where: string }[] = [];
        const problems = new ErrorCollector();
        const claim = (ip: string, portNo: number, where: string): void => {
          const clash = taken.find((t) => t.port === portNo && (t.ip === ip || isWildcard(t.ip) || isWildcard(ip)));
          if (clash) problems.add(new ConfigError(where, `port ${portNo} on ${ip} is already used by ${clash.where}`));
          else taken.push({ ip, port: portNo, where });
        };
        l.c2s.forEach((c, i) => claim(c.ip_address, c.port, `${p}.c2s[${i}]`));
        l.http.forEach((h, i) => claim(h.ip_address, h.port, `${p}.http[${i}]`));
        problems.throwIfAny();
        return l;
      },
    },
  );
}

const listenSpec: SectionSpec = listenSpecWith();

// ---------------------------------------------------------------------------
// [auth]

const authMethod = custom((value, p) => {
  if (typeof value !== 'string') fail(p, `expected a string, got ${describe(value)}`);
  if (MONGOOSEIM_ONLY_AUTH_METHODS.includes(value)) {
    fail(p, `auth method ${JSON.stringify(value)} is not implemented by Petrel; ${IMPLEMENTED}`);
  }
  if (!(AUTH_METHODS as readonly string[]).includes(value)) fail(p, `must be one of "internal", "rdbms", got ${JSON.stringify(value)}`);
  return value;
});

const notImplementedMethodSection = (name: string): Spec =>
  custom((_v, p) => fail(p, `auth method ${JSON.stringify(name)} is not implemented by Petrel; ${IMPLEMENTED}`));

type RawAuth = {
  methods?: string[];
  sasl_mechanisms: AuthConfig['sasl_mechanisms'];
  password: { format: AuthConfig['password']['format']; scram_iterations?: number };
  scram_iterations?: number;
  internal?: Record<string, never>;
  rdbms?: Record<string, never>;
};

const authSpec: SectionSpec = section(
  {
    methods: list(authMethod, { nonEmpty: true, unique: true }),
    sasl_mechanisms: list(str({ oneOf: SASL_MECHANISMS }), { nonEmpty: true, unique: true, default: [...SASL_MECHANISMS] }),
    password: section(
      {
        format: str({ oneOf: PASSWORD_FORMATS, default: 'scram' }),
        scram_iterations: int({ min: 1 }),
      },
      { default: true },
    ),
    // Where MongooseIM releases before 6.0 put it; still accepted.
    scram_iterations: int({ min: 1 }),
    internal: section({}),
    rdbms: section({}),
    ...Object.fromEntries(MONGOOSEIM_ONLY_AUTH_METHODS.map((m) => [m, notImplementedMethodSection(m)])),
  },
  {
    default: true,
    process(a: RawAuth, p, ctx): AuthConfig {
      if (a.scram_iterations !== undefined && a.password.scram_iterations !== undefined) {
        fail(`${p}.scram_iterations`, `also set as ${p}.password.scram_iterations; keep only one`);
      }
      const iterations = a.password.scram_iterations ?? a.scram_iterations ?? DEFAULT_SCRAM_ITERATIONS;
      if (iterations < RECOMMENDED_MIN_SCRAM_ITERATIONS) {
        const where = a.password.scram_iterations !== undefined ? `${p}.password.scram_iterations` : `${p}.scram_iterations`;
        ctx.warnings.push(`${where}: ${iterations} is below ${RECOMMENDED_MIN_SCRAM_ITERATIONS}, the minimum RFC 7677 recommends`);
      }

      let methods: string[];
      let internal = a.internal;
      if (a.methods !== undefined) {
        // As in MongooseIM, a listed method needs its own section; [auth.rdbms]
        // has no options, so "rdbms" may be listed without one (MongooseIM's own example does).
        a.methods.forEach((m, i) => {
          if (m === 'internal' && internal === undefined) fail(`${p}.methods[${i}]`, 'method "internal" has no [auth.internal] section');
        });
        // MongooseIM tries several methods in turn; Petrel keeps every account in one store.
        if (a.methods.length > 1) fail(`${p}.methods[1]`, 'Petrel authenticates against one user store: list one method, "internal" or "rdbms"');
        methods = a.methods;
      } else if (internal !== undefined && a.rdbms !== undefined) {
        fail(`${p}.rdbms`, 'both [auth.internal] and [auth.rdbms] are present; Petrel keeps accounts in one store: remove one, or set auth.methods');
      } else if (a.rdbms !== undefined) {
        methods = ['rdbms'];
      } else if (internal !== undefined) {
        methods = ['internal'];
      } else {
        // No method named anywhere: the embedded store, which needs no setup.
        methods = ['internal'];
        internal = {};
      }

      const out: AuthConfig = {
        methods,
        sasl_mechanisms: a.sasl_mechanisms,
        password: { format: a.password.format },
        scram_iterations: iterations,
      };
      if (internal !== undefined) out.internal = internal;
      if (a.rdbms !== undefined) out.rdbms = a.rdbms;
      return out;
    },
  },
);

// ---------------------------------------------------------------------------
// [shaper]

const shaperSpec: SectionSpec = section(
  {},
  {
    default: true,
    wildcard: section({ max_rate: int({ min: 1 }) }, { required: ['max_rate'] }),
    process(s: Record<string, ShaperConfig>, p) {
      if (Object.hasOwn(s, 'none')) fail(`${p}.none`, '"none" is reserved: a listener with shaper = "none" is not shaped');
      return s;
    },
  },
);

/** The core sections, by top-level TOML key. */
export const coreSections: Readonly<Record<'general' | 'listen' | 'auth' | 'shaper', SectionSpec>> = {
  general: generalSpec,
  listen: listenSpec,
  auth: authSpec,
  shaper: shaperSpec,
};

/**
 * Checks that need more than one section: every shaper a listener names must
 * be defined, either as [shaper.NAME] or as an access rule (such as
 * MongooseIM's `c2s_shaper`) whose every value is a defined shaper or "none";
 * every access rule a listener names must be defined and give only "allow"
 * or "deny".
 */
export function crossCheckCore(cfg: {
  listen: { c2s: C2SListenerConfig[] };
  shaper: Record<string, ShaperConfig>;
  access: Record<string, AccessClause[]>;
}): void {
  const problems = new ErrorCollector();
  cfg.listen.c2s.forEach((l, i) => {
    const where = `listen.c2s[${i}]`;
    if (l.shaper !== 'none' && !Object.hasOwn(cfg.shaper, l.shaper)) {
      if (Object.hasOwn(cfg.access, l.shaper)) {
        for (const e of checkRule(cfg.access, l.shaper, `${where}.shaper`, 'the name of a [shaper.NAME] or "none"', (v) => v === 'none' || (typeof v === 'string' && Object.hasOwn(cfg.shaper, v)))) problems.add(e);
      } else {
        problems.add(new ConfigError(`${where}.shaper`, `no shaper named ${JSON.stringify(l.shaper)}; define it as [shaper.${l.shaper}] (or an access rule giving shaper names) or use "none"`));
      }
    }
    for (const e of checkRule(cfg.access, l.access, `${where}.access`, '"allow" or "deny"', (v) => v === 'allow' || v === 'deny')) problems.add(e);
  });
  problems.throwIfAny();
}
