// Reading a TOML config file into a validated, deep-frozen PetrelConfig.
// The core sections are defined in core-spec.ts; sections and modules of
// higher layers hand their specs in, so this layer never imports them.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, TomlError } from 'smol-toml';
import { ConfigError, describe, fail, isTable, keyPath, validate, type Spec, type ValidateCtx } from './schema.ts';
import { coreSections, crossCheckCore, listenSpecWith } from './core-spec.ts';
import type { PetrelConfig } from './types.ts';

export interface LoadOptions {
  /** Specs of sections defined by higher layers: e.g. { outgoing_pools: spec } */
  sections: Record<string, Spec>;
  /** Spec of each known module, by name (modules.<name>); an unknown module name is an error "modules.X: unknown module". */
  modules: Record<string, Spec>;
  /** Specs of listener types defined by higher layers: { http: spec of one [[listen.http]] table }. */
  listeners?: { http?: Spec };
}

/** MongooseIM sections Petrel has no counterpart for, with the reason given to the operator. */
const MONGOOSEIM_ONLY_SECTIONS: Readonly<Record<string, string>> = {
  s2s: 'Petrel has no s2s',
  host_config: 'Petrel has no per-host configuration',
  acl: 'Petrel has no access control lists',
  access: 'Petrel has no access rules',
  services: 'Petrel has no services',
  internal_databases: 'Petrel keeps its state in general.data_dir',
  instrumentation: 'Petrel exposes metrics through a [[listen.http]] mongoose_prometheus_handler',
};

/** The environment variable that overrides general.data_dir for every command. */
export const DATA_DIR_ENV = 'PETREL_DATA_DIR';

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
  let text: string;
  try {
    text = readFileSync(abs, 'utf8');
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
  return parseConfig(text, abs, opts);
}

/** Parses and validates config text; relative paths inside resolve against dirname(configPath). */
export function parseConfig(text: string, configPath: string, opts: LoadOptions): PetrelConfig {
  const abs = resolve(configPath);
  try {
    return build(parseToml(text, abs), abs, opts);
  } catch (err) {
    if (err instanceof ConfigError && err.file === undefined) err.file = abs;
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

function build(raw: Record<string, unknown>, configPath: string, opts: LoadOptions): PetrelConfig {
  const configDir = dirname(configPath);
  const ctx: ValidateCtx = { configDir, warnings: [] };

  for (const name of Object.keys(opts.sections)) {
    if (Object.hasOwn(coreSections, name) || name === 'modules') {
      throw new Error(`config: section "${name}" is defined by the core and cannot be replaced`);
    }
  }
  const known = new Set<string>([...Object.keys(coreSections), 'modules', 'outgoing_pools', ...Object.keys(opts.sections)]);
  for (const key of Object.keys(raw)) {
    if (known.has(key)) continue;
    const p = keyPath('', key);
    if (Object.hasOwn(MONGOOSEIM_ONLY_SECTIONS, key)) fail(p, `${MONGOOSEIM_ONLY_SECTIONS[key]}; unknown section`);
    fail(p, 'unknown section');
  }

  const general = validate(coreSections.general, raw.general, 'general', ctx);
  const listen = validate(listenSpecWith(opts.listeners?.http), raw.listen, 'listen', ctx);
  const auth = validate(coreSections.auth, raw.auth, 'auth', ctx);
  const shaper = validate(coreSections.shaper, raw.shaper, 'shaper', ctx);
  crossCheckCore({ listen, shaper }, ctx);

  const envDataDir = process.env[DATA_DIR_ENV];
  if (envDataDir !== undefined && envDataDir !== '') general.data_dir = resolve(process.cwd(), envDataDir);

  const extras: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(opts.sections)) {
    if (name === 'outgoing_pools') continue;
    // A missing section is validated as an empty table so its defaults apply.
    extras[name] = validate(spec, raw[name] ?? {}, name, ctx);
  }

  const poolsSpec = opts.sections.outgoing_pools;
  let outgoing_pools: PetrelConfig['outgoing_pools'];
  if (poolsSpec !== undefined) {
    outgoing_pools = validate(poolsSpec, raw.outgoing_pools ?? {}, 'outgoing_pools', ctx);
  } else if (raw.outgoing_pools !== undefined) {
    fail('outgoing_pools', 'unknown section');
  } else {
    outgoing_pools = { http: {} };
  }

  const modules = validateModules(raw.modules, opts.modules, ctx);

  const config: PetrelConfig = {
    ...extras,
    configPath,
    configDir,
    general,
    listen,
    auth,
    shaper,
    outgoing_pools,
    modules,
    warnings: ctx.warnings,
  };
  return deepFreeze(config);
}

function validateModules(value: unknown, specs: Record<string, Spec>, ctx: ValidateCtx): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (value === undefined) return out;
  if (!isTable(value)) fail('modules', `expected a table, got ${describe(value)}`);
  const names = Object.keys(specs).sort();
  for (const [name, opts] of Object.entries(value)) {
    const p = keyPath('modules', name);
    if (!Object.hasOwn(specs, name)) {
      fail(p, `unknown module; Petrel has ${names.map((n) => JSON.stringify(n)).join(', ') || 'no modules'}`);
    }
    Object.defineProperty(out, name, { value: validate(specs[name], opts, p, ctx), enumerable: true, writable: true, configurable: true });
  }
  return out;
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const key of Object.keys(v)) deepFreeze((v as Record<string, unknown>)[key]);
  }
  return v;
}
