// The schema of one [[listen.http]] table, in MongooseIM's syntax
// (doc/listeners/listen-http.md): port and address, [listen.http.tls] for
// HTTPS, transport and protocol options, and the handler tables, each kind
// adding its own options (HttpHandlerDefinition.configSpec) to the common
// `host` and `path`. The config layer receives this spec as
// LoadOptions.listeners.http and knows nothing of handlers.
import { isIP } from 'node:net';
import {
  bool, custom, describe, fail, int, keyPath, list, path, section, str, validate,
  type SectionSpec, type Spec, type ValidateCtx,
} from '../config/schema.ts';
import { ipAddressOption, port } from '../config/core-spec.ts';
import { MONGOOSEIM_HTTP_HANDLERS, notImplemented } from '../config/mongooseim.ts';
import type { HttpHandlerOptions, HttpHandlerRegistry, HttpListenerConfig, HttpTlsConfig } from './types.ts';
import { checkCertificatePair } from '../config/certificates.ts';

/** MongooseIM's defaults for listen.http.transport (Ranch's max_connections). */
export const DEFAULT_NUM_ACCEPTORS = 100;
export const DEFAULT_MAX_CONNECTIONS = 1024;
/** Petrel's: ms to receive a complete request head (listen.http.protocol.headers_timeout). */
export const DEFAULT_HEADERS_TIMEOUT = 10_000;

/** The Cowboy route suffix that makes a path serve everything below it. */
export const SUBTREE_SUFFIX = '/[...]';

function quoteList(names: readonly string[]): string {
  return names.map((n) => JSON.stringify(n)).join(', ');
}

/**
 * A handler's path. MongooseIM hands it to Cowboy as a route pattern;
 * Petrel matches it literally, with one Cowboy form: a trailing "/[...]"
 * also matches every path below. Other pattern syntax would silently match
 * nothing here, so it is refused.
 */
function checkPath(v: string): string | undefined {
  if (!v.startsWith('/')) return `must start with "/", got ${JSON.stringify(v)}`;
  if (/[?#\s]/.test(v)) return `must be a path without query, fragment or spaces, got ${JSON.stringify(v)}`;
  const literal = v.endsWith(SUBTREE_SUFFIX) ? v.slice(0, -SUBTREE_SUFFIX.length) : v;
  if (/[[\]]/.test(literal) || literal.split('/').some((seg) => seg.startsWith(':'))) {
    return `Cowboy route patterns are not supported, only a literal path with an optional trailing "/[...]", got ${JSON.stringify(v)}`;
  }
  return undefined;
}

const commonHandlerItems: Record<string, Spec> = {
  host: str({ nonEmpty: true }),
  path: str({ check: checkPath }),
};

/** A handler kind's own section merged with `host` and `path` (as MongooseIM's merge_sections does). */
function handlerSpec(name: string, own: SectionSpec): SectionSpec {
  for (const key of Object.keys(commonHandlerItems)) {
    if (Object.hasOwn(own.items, key)) throw new Error(`HTTP handler ${name}: its configSpec must not define "${key}"`);
  }
  return section(
    { ...commonHandlerItems, ...own.items },
    { required: ['host', 'path', ...own.required], wildcard: own.wildcard, process: own.process },
  );
}

// ---------------------------------------------------------------------------
// [listen.http.tls]

const TLS_VERSIONS = ['tlsv1.2', 'tlsv1.3'] as const;

const tlsVersion = custom((value, p) => {
  if (typeof value !== 'string') fail(p, `expected a string, got ${describe(value)}`);
  if (!(TLS_VERSIONS as readonly string[]).includes(value)) {
    fail(p, `Petrel serves TLS 1.2 and 1.3 only: must be one of ${quoteList(TLS_VERSIONS)}, got ${JSON.stringify(value)}`);
  }
  return value;
});

const tlsSpec = section(
  {
    certfile: path({ exists: true }),
    keyfile: path({ exists: true }),
    password: str(),
    cacertfile: path({ exists: true }),
    verify_mode: str({ oneOf: ['none', 'peer', 'selfsigned_peer'], default: 'none' }),
    ciphers: str({ nonEmpty: true }),
    versions: list(tlsVersion, { nonEmpty: true, unique: true }),
    dhfile: path({ exists: true }),
  },
  {
    required: ['certfile', 'keyfile'],
    process(t: HttpTlsConfig, p): HttpTlsConfig {
      if (t.verify_mode === 'peer' && t.cacertfile === undefined) {
        fail(`${p}.cacertfile`, 'verify_mode "peer" verifies client certificates against the CAs of cacertfile: set it');
      }
      // Refused here rather than when the listener starts, so that check-config refuses it too.
      checkCertificatePair(t.certfile, t.keyfile, p, t.password);
      return t;
    },
  },
);

// ---------------------------------------------------------------------------
// [[listen.http]]

/** MongooseIM's int_or_infinity: "infinity" means no limit, stored as 0. */
const maxConnections = custom(
  (value, p, ctx) => {
    if (value === 'infinity') return 0;
    if (typeof value === 'string') fail(p, `expected a positive integer or "infinity", got ${describe(value)}`);
    return validate(int({ min: 1 }), value, p, ctx);
  },
  { default: DEFAULT_MAX_CONNECTIONS },
);

type RawListener = Omit<HttpListenerConfig, 'ip_address' | 'handlers'> & {
  ip_address?: string;
  handlers?: Record<string, HttpHandlerOptions[]>;
};

/**
 * The spec of one [[listen.http]] table serving the handler kinds of
 * `handlers`. Errors name the kinds Petrel has when a table names another,
 * and a listener without any handler is refused (it could only answer 404).
 */
export function httpListenerSpec(handlers: HttpHandlerRegistry<any>): SectionSpec {
  const names = Object.keys(handlers).sort();
  const serves = `Petrel serves ${quoteList(names) || 'no HTTP handler'}`;
  const handlerItems: Record<string, Spec> = {};
  for (const name of names) handlerItems[name] = list(handlerSpec(name, handlers[name]!.configSpec), { nonEmpty: true });
  // MongooseIM's other kinds: accepted with a warning saying what is not served; their routes are left out.
  const missing = new Set<string>();
  for (const [name, [feature, loses]] of Object.entries(MONGOOSEIM_HTTP_HANDLERS)) {
    if (Object.hasOwn(handlerItems, name)) continue;
    handlerItems[name] = notImplemented(feature, loses);
    missing.add(name);
  }

  return section(
    {
      port,
      ip_address: ipAddressOption,
      proto: str({ oneOf: ['tcp'], default: 'tcp' }),
      ip_version: custom((value, p) => {
        if (value !== 4 && value !== 6) fail(p, `must be 4 or 6, got ${describe(value)}`);
        return value;
      }),
      tls: tlsSpec,
      transport: section(
        { num_acceptors: int({ min: 1, default: DEFAULT_NUM_ACCEPTORS }), max_connections: maxConnections },
        { default: true },
      ),
      protocol: section(
        {
          compress: bool({ default: false }),
          // No default in the validated table: the listener applies DEFAULT_HEADERS_TIMEOUT.
          headers_timeout: int({ min: 100 }),
        },
        { default: true },
      ),
      handlers: section(handlerItems, { wildcard: custom((_v, p) => fail(p, `unknown handler; ${serves}`)) }),
    },
    {
      required: ['port'],
      process(l: RawListener, p: string, ctx: ValidateCtx): HttpListenerConfig {
        const ip = resolveAddress(l, p);
        const all = Object.entries(l.handlers ?? {});
        if (all.length === 0) {
          fail(p, `no handler: add at least one [[listen.http.handlers.<kind>]] table; ${serves}`);
        }
        // A listener whose handlers are all of kinds Petrel does not serve keeps no route and is not opened.
        const present = all.filter(([name]) => !missing.has(name));
        checkUniqueRoutes(present, `${p}.handlers`);
        if (l.protocol.compress) {
          ctx.warnings.push(`${p}.protocol.compress: accepted for compatibility with MongooseIM; Petrel sends responses uncompressed`);
        }
        const out: HttpListenerConfig = {
          port: l.port,
          ip_address: ip,
          proto: l.proto,
          transport: l.transport,
          protocol: l.protocol,
          handlers: Object.fromEntries(present),
        };
        if (l.ip_version !== undefined) out.ip_version = l.ip_version;
        if (l.tls !== undefined) out.tls = l.tls;
        return out;
      },
    },
  );
}

/** ip_address, or the wildcard address of ip_version (IPv4 when neither is set, as in MongooseIM). */
function resolveAddress(l: RawListener, p: string): string {
  if (l.ip_address === undefined) return l.ip_version === 6 ? '::' : '0.0.0.0';
  if (l.ip_version !== undefined && isIP(l.ip_address) !== l.ip_version) {
    fail(`${p}.ip_version`, `is ${l.ip_version} but ip_address ${JSON.stringify(l.ip_address)} is an IPv${isIP(l.ip_address)} address`);
  }
  return l.ip_address;
}

/** A second table with the same host and path could never be reached. */
function checkUniqueRoutes(present: Array<[string, HttpHandlerOptions[]]>, p: string): void {
  const seen = new Map<string, string>();
  for (const [name, tables] of present) {
    tables.forEach((h, i) => {
      const where = `${keyPath(p, name)}[${i}]`;
      const key = `${h.host.toLowerCase()} ${h.path}`;
      const first = seen.get(key);
      if (first !== undefined) fail(where, `host ${JSON.stringify(h.host)} and path ${JSON.stringify(h.path)} are already served by ${first}`);
      seen.set(key, where);
    });
  }
}

/**
 * The [[listen.http]] tables of a loaded configuration. The config layer
 * types them by address only; this spec is what produced them.
 */
export function httpListenersOf(config: { listen: { http: readonly unknown[] } }): readonly HttpListenerConfig[] {
  // Tables left with no handler (all of kinds Petrel does not serve) are not opened.
  return (config.listen.http as readonly HttpListenerConfig[]).filter((l) => Object.keys(l.handlers).length > 0);
}
