// Reading a TOML config file into a validated, deep-frozen PetrelConfig.
// The core sections are defined in core-spec.ts; sections and modules of
// higher layers hand their specs in, so this layer never imports them. Every
// section and module is validated even when an earlier one is wrong, so the
// ConfigError thrown lists every problem of the file (its `errors`).
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, TomlError } from 'smol-toml';
import { ConfigError, ErrorCollector, FAILED, describe, fail, isTable, keyPath, validate, type IgnoredOption, type Spec, type ValidateCtx } from './schema.ts';
import { coreSections, crossCheckCore, listenSpecWith, withSelfSignedPaths } from './core-spec.ts';
import type { PetrelConfig } from './types.ts';
import { accessSpec, aclSpec } from './access.ts';
import { MONGOOSEIM_MODULES, MONGOOSEIM_REFUSED_MODULES, MONGOOSEIM_SERVICES, notImplemented, type MissingFeature } from './mongooseim.ts';
import { custom, section } from './schema.ts';
import { clusterSpec, internalDatabasesSpec } from './cluster-spec.ts';

export interface LoadOptions {
  /** Specs of sections defined by higher layers: e.g. { outgoing_pools: spec } */
  sections: Record<string, Spec>;
  /** Spec of each known module, by name (modules.<name>); an unknown module name is an error "modules.X: unknown module". */
  modules: Record<string, Spec>;
  /** Specs of listener types defined by higher layers: { http: spec of one [[listen.http]] table }. */
  listeners?: { http?: Spec };
}

/** MongooseIM sections Petrel refuses, with the reason given to the operator. */
const MONGOOSEIM_ONLY_SECTIONS: Readonly<Record<string, string>> = {
  host_config: 'per-host configuration is not implemented, and it can change access rules and authentication for a host, so it is refused',
};

const unknownService = custom((_v, p) => fail(p, `unknown service; MongooseIM's ${Object.keys(MONGOOSEIM_SERVICES).map((n) => JSON.stringify(n)).join(', ')} are accepted (not implemented)`));

/** MongooseIM sections Petrel accepts besides its own: honoured, or accepted with what is lost. */
const MONGOOSEIM_SECTIONS: Readonly<Record<string, Spec>> = {
  acl: aclSpec,
  access: accessSpec,
  // "mnesia": the local session table; "cets": how the cluster's nodes find each other (docs/cluster.md).
  internal_databases: internalDatabasesSpec,
  s2s: notImplemented('s2s', 'no federation: users cannot exchange stanzas with other servers, and the s2s port is not opened'),
  services: section(
    Object.fromEntries(Object.entries(MONGOOSEIM_SERVICES).map(([name, loses]) => [name, notImplemented(name, loses)])),
    { wildcard: unknownService },
  ),
  instrumentation: section(
    {
      // Honoured: the metrics are served by a [[listen.http]] mongoose_prometheus_handler.
      prometheus: section({}),
      log: notImplemented('instrumentation.log', 'metrics are not written to the log; read them from the Prometheus handler or with petrel metrics'),
      exometer: notImplemented('instrumentation.exometer', 'no exometer reporters (Graphite...); scrape the Prometheus handler instead'),
    },
  ),
};

/** The environment variable that overrides general.data_dir for every command. */
const DATA_DIR_ENV = 'PETREL_DATA_DIR';

/** <package root>/config/petrel.toml, the configuration shipped with Petrel. */
export function defaultConfigPath(): string {
  return fileURLToPath(new URL('../../config/petrel.toml', import.meta.url));
}

/**
 * Reads and validates a config file (synchronously: this runs once, at
 * start-up). `undefined` means the shipped default.
 */
export function loadConfigFile(file: string | undefined, opts: LoadOptions): PetrelConfig {
  const abs = resolve(file ?? defaultConfigPath());
  const text = readConfigText(abs);
  return parseConfig(text, abs, opts);
}

function readConfigText(abs: string): string {
  try {
    return readFileSync(abs, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' ? 'does not exist'
      : code === 'EISDIR' ? 'is a directory, not a file'
      : code === 'EACCES' ? 'cannot be read (permission denied)'
      : `cannot be read (${code ?? (err as Error).message})`;
    const e = new ConfigError('', `config file ${abs} ${why}`);
    e.file = abs;
    throw e;
  }
}

/** Parses and validates config text; relative paths inside resolve against dirname(configPath). */
export function parseConfig(text: string, configPath: string, opts: LoadOptions): PetrelConfig {
  const abs = resolve(configPath);
  try {
    return build(parseToml(text, abs), abs, opts);
  } catch (err) {
    if (err instanceof ConfigError) for (const e of [err, ...err.errors]) e.file ??= abs;
    throw err;
  }
}

function parseToml(text: string, file: string): Record<string, unknown> {
  try {
    // Huge integers come back as bigint so the schema can report them as out
    // of range, instead of a syntax error that would not name the option.
    return parse(text, { integersAsBigInt: 'asNeeded', unsafeKeyBehaviour: 'throw' }) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof TomlError) {
      const reason = err.message.split('\n')[0].replace(/^Invalid TOML document:\s*/, '');
      const e = new ConfigError('', `${file}:${err.line}:${err.column}: invalid TOML: ${reason}\n${err.codeblock}`);
      e.file = file;
      throw e;
    }
    throw err;
  }
}

/**
 * The file validated part by part: the whole config when every part is
 * valid, else the parts that are (modules, pools) beside every problem, so
 * that checks of what those parts name can run in the same pass.
 */
export interface ConfigParts {
  configPath: string;
  configDir: string;
  config?: PetrelConfig;
  modules?: Record<string, unknown>;
  outgoing_pools?: PetrelConfig['outgoing_pools'];
  errors: readonly ConfigError[];
}

/** As loadConfigFile, but returns every problem of the file instead of throwing them. */
export function loadConfigParts(file: string | undefined, opts: LoadOptions): ConfigParts {
  const abs = resolve(file ?? defaultConfigPath());
  try {
    const text = readConfigText(abs);
    return validateParts(parseToml(text, abs), abs, opts);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const e of [err, ...err.errors]) e.file ??= abs;
    return { configPath: abs, configDir: dirname(abs), errors: err.errors };
  }
}

function build(raw: Record<string, unknown>, configPath: string, opts: LoadOptions): PetrelConfig {
  const parts = validateParts(raw, configPath, opts);
  if (parts.config === undefined) throw ConfigError.of(parts.errors);
  return parts.config;
}

function validateParts(raw: Record<string, unknown>, configPath: string, opts: LoadOptions): ConfigParts {
  const configDir = dirname(configPath);
  const ignored: IgnoredOption[] = [];
  const missing: MissingFeature[] = [];
  const ctx: ValidateCtx = { configDir, warnings: [], ignored, missing };

  for (const name of Object.keys(opts.sections)) {
    if (Object.hasOwn(coreSections, name) || name === 'modules' || name === 'cluster') {
      throw new Error(`config: section "${name}" is defined by the core and cannot be replaced`);
    }
  }
  const problems = new ErrorCollector();
  const known = new Set<string>([...Object.keys(coreSections), 'modules', 'cluster', 'outgoing_pools', ...Object.keys(MONGOOSEIM_SECTIONS), ...Object.keys(opts.sections)]);
  for (const key of Object.keys(raw)) {
    if (known.has(key)) continue;
    const why = Object.hasOwn(MONGOOSEIM_ONLY_SECTIONS, key) ? `${MONGOOSEIM_ONLY_SECTIONS[key]}; unknown section` : 'unknown section';
    problems.add(new ConfigError(keyPath('', key), why));
  }

  const general = problems.run(() => validate(coreSections.general, raw.general, 'general', ctx));
  const listen = problems.run(() => validate(listenSpecWith(opts.listeners?.http), raw.listen, 'listen', ctx));
  const auth = problems.run(() => validate(coreSections.auth, raw.auth, 'auth', ctx));
  const shaper = problems.run(() => validate(coreSections.shaper, raw.shaper, 'shaper', ctx));
  const cluster = problems.run(() => validate(clusterSpec, raw.cluster ?? {}, 'cluster', ctx));
  const mim: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(MONGOOSEIM_SECTIONS)) {
    if (raw[name] !== undefined && spec.compat !== undefined) ignored.push({ path: name, reason: spec.compat });
    if (raw[name] !== undefined || name === 'acl' || name === 'access') mim[name] = problems.run(() => validate(spec, raw[name], name, ctx));
  }
  const access = mim.access as PetrelConfig['access'] | typeof FAILED;
  if (listen !== FAILED && shaper !== FAILED && access !== FAILED) problems.run(() => crossCheckCore({ listen, shaper, access }));

  const extras: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(opts.sections)) {
    if (name === 'outgoing_pools') continue;
    // A missing section is validated as an empty table so its defaults apply.
    extras[name] = problems.run(() => validate(spec, raw[name] ?? {}, name, ctx));
  }

  const poolsSpec = opts.sections.outgoing_pools;
  let outgoing_pools: PetrelConfig['outgoing_pools'] | typeof FAILED;
  if (poolsSpec !== undefined) {
    outgoing_pools = problems.run(() => validate(poolsSpec, raw.outgoing_pools ?? {}, 'outgoing_pools', ctx));
  } else if (raw.outgoing_pools !== undefined) {
    outgoing_pools = problems.run(() => fail('outgoing_pools', 'unknown section'));
  } else {
    outgoing_pools = { http: {}, rabbit: {} };
  }

  const modules = problems.run(() => validateModules(raw.modules, opts.modules, ctx));
  if (problems.errors.length > 0) {
    const parts: ConfigParts = { configPath, configDir, errors: problems.errors };
    if (modules !== FAILED) parts.modules = modules;
    if (outgoing_pools !== FAILED) parts.outgoing_pools = outgoing_pools;
    return parts;
  }
  // Every part is valid past this point; the casts only drop FAILED from the types.
  const g = general as PetrelConfig['general'];

  const envDataDir = process.env[DATA_DIR_ENV];
  if (envDataDir !== undefined && envDataDir !== '') g.data_dir = resolve(process.cwd(), envDataDir);
  withSelfSignedPaths((listen as PetrelConfig['listen']).c2s, g.data_dir);

  const config: PetrelConfig = {
    ...extras,
    configPath,
    configDir,
    general: g,
    listen: listen as PetrelConfig['listen'],
    auth: auth as PetrelConfig['auth'],
    shaper: shaper as PetrelConfig['shaper'],
    outgoing_pools: outgoing_pools as PetrelConfig['outgoing_pools'],
    modules: modules as PetrelConfig['modules'],
    warnings: ctx.warnings,
    ignored,
    missing,
    acl: mim.acl as PetrelConfig['acl'],
    access: access as PetrelConfig['access'],
    internal_databases: (mim.internal_databases ?? {}) as PetrelConfig['internal_databases'],
    cluster: cluster as PetrelConfig['cluster'],
  };
  return { configPath, configDir, config: deepFreeze(config), modules: config.modules, outgoing_pools: config.outgoing_pools, errors: [] };
}

function validateModules(value: unknown, specs: Record<string, Spec>, ctx: ValidateCtx): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (value === undefined) return out;
  if (!isTable(value)) fail('modules', `expected a table, got ${describe(value)}`);
  const names = Object.keys(specs).sort();
  const problems = new ErrorCollector();
  for (const [name, opts] of Object.entries(value)) {
    const p = keyPath('modules', name);
    if (!Object.hasOwn(specs, name) && Object.hasOwn(MONGOOSEIM_REFUSED_MODULES, name)) {
      problems.add(new ConfigError(p, `not implemented, and refused because ${MONGOOSEIM_REFUSED_MODULES[name]}`));
      continue;
    }
    if (!Object.hasOwn(specs, name) && Object.hasOwn(MONGOOSEIM_MODULES, name)) {
      // Accepted with its warning; nothing is started for it.
      if (!isTable(opts)) {
        problems.add(new ConfigError(p, `expected a table, got ${describe(opts)}`));
        continue;
      }
      validate(notImplemented(name, MONGOOSEIM_MODULES[name]!), opts, p, ctx);
      continue;
    }
    if (!Object.hasOwn(specs, name)) {
      problems.add(new ConfigError(p, `unknown module; Petrel has ${names.map((n) => JSON.stringify(n)).join(', ') || 'no modules'}`));
      continue;
    }
    const v = problems.run(() => validate(specs[name], opts, p, ctx));
    if (v !== FAILED) Object.defineProperty(out, name, { value: v, enumerable: true, writable: true, configurable: true });
  }
  problems.throwIfAny();
  return out;
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const key of Object.keys(v)) deepFreeze((v as Record<string, unknown>)[key]);
  }
  return v;
}
