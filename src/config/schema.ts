// A small declarative schema for TOML configuration, in the manner of
// MongooseIM's mongoose_config_spec: a spec is a section (a table with named
// items), a list (an array whose items share a spec), an option (a scalar with
// a type, a default and checks), or a custom function. Validation walks the
// parsed TOML and the spec together, so every error can name the exact TOML
// path of the offending value ("listen.c2s[0].port: ..."), and it goes on past
// a bad value to the next key or list item, so one run reports every problem.
import { isAbsolute, resolve } from 'node:path';
import { statSync } from 'node:fs';

export class ConfigError extends Error {
  readonly code = 'config_invalid' as const;
  /** TOML path of the offending value ("" when the problem is the file as a whole). */
  readonly path: string;
  /** What is wrong, without the path. */
  readonly detail: string;
  /** The config file, when known (set by the loader). */
  file?: string;
  #gathered: readonly ConfigError[] | undefined;

  constructor(path: string, detail: string) {
    super(path === '' ? detail : `${path}: ${detail}`);
    this.name = 'ConfigError';
    this.path = path;
    this.detail = detail;
  }

  /**
   * One error standing for several problems: the problem itself when there
   * is one; otherwise an error whose message lists them all, one per line,
   * and whose path and detail are the first one's.
   */
  static of(errors: readonly ConfigError[]): ConfigError {
    const all = errors.flatMap((e) => e.errors);
    if (all.length === 0) throw new Error('ConfigError.of needs at least one error');
    if (all.length === 1) return all[0];
    const e = new ConfigError(all[0].path, all[0].detail);
    e.message = all.map((x) => x.message).join('\n');
    e.#gathered = all;
    return e;
  }

  /** Every problem this error stands for, in the order they were found. */
  get errors(): readonly ConfigError[] {
    return this.#gathered ?? [this];
  }
}

export function fail(path: string, message: string): never {
  throw new ConfigError(path, message);
}

/** Returned by ErrorCollector.run when the part it ran was invalid. */
export const FAILED: unique symbol = Symbol('invalid');

/**
 * Gathers the problems of independent parts (sibling keys, list items,
 * sections) so that one run reports them all: `run` keeps the ConfigError a
 * part throws and carries on; `throwIfAny` throws everything kept as one.
 */
export class ErrorCollector {
  readonly errors: ConfigError[] = [];

  add(err: ConfigError): void {
    this.errors.push(...err.errors);
  }

  /** The value `fn` returns, or FAILED once the ConfigError it threw is kept. Other errors pass through. */
  run<T>(fn: () => T): T | typeof FAILED {
    try {
      return fn();
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      this.add(err);
      return FAILED;
    }
  }

  throwIfAny(): void {
    if (this.errors.length > 0) throw ConfigError.of(this.errors);
  }
}

/** An option present in the file that Petrel accepts only so a MongooseIM file loads (see compat()). */
export interface IgnoredOption {
  /** TOML path of the option. */
  readonly path: string;
  /** Why it has no effect in Petrel. */
  readonly reason: string;
}

/** The warning an ignored option draws: "outgoing_pools.http.p.strategy: accepted, no effect in Petrel (...)". */
export function ignoredWarning(o: IgnoredOption): string {
  return `${o.path}: accepted, no effect in Petrel (${o.reason})`;
}

export interface ValidateCtx {
  /** Absolute directory that relative paths resolve against. */
  configDir: string;
  /** Non-fatal findings for the operator; specs push into it. */
  warnings: string[];
  /**
   * Compatibility options found in the file. Without this list they are
   * reported in `warnings` (as ignoredWarning words them) instead.
   */
  ignored?: IgnoredOption[];
  /**
   * MongooseIM features the file configures and Petrel does not implement
   * (see mongooseim.ts). Without this list they are reported in `warnings`.
   */
  missing?: import('./mongooseim.ts').MissingFeature[];
}

type Check = (value: unknown, path: string, ctx: ValidateCtx) => unknown;

interface SpecBase {
  /** True when a missing key takes `defaultValue` instead of being left out. */
  readonly hasDefault: boolean;
  readonly defaultValue?: unknown;
  /** Set by compat(): why the option, though validated, has no effect in Petrel. */
  readonly compat?: string;
}

export interface OptionSpec extends SpecBase {
  readonly kind: 'option';
  readonly type: 'string' | 'integer' | 'boolean' | 'path';
  readonly run: Check;
}

export interface ListSpec extends SpecBase {
  readonly kind: 'list';
  readonly item: Spec;
  readonly nonEmpty: boolean;
  readonly unique: boolean;
}

export interface SectionSpec extends SpecBase {
  readonly kind: 'section';
  readonly items: Readonly<Record<string, Spec>>;
  readonly required: readonly string[];
  readonly wildcard?: Spec;
  readonly process?: (value: any, path: string, ctx: ValidateCtx) => any;
}

export interface CustomSpec extends SpecBase {
  readonly kind: 'custom';
  readonly run: Check;
}

export type Spec = OptionSpec | SectionSpec | ListSpec | CustomSpec;

// ---------------------------------------------------------------------------
// Describing values and paths in messages

/** A TOML table as smol-toml returns it (a plain object, not an array or a date). */
export function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** "the string "abc"", "the integer 5", "a table"... as the value reads in TOML. */
export function describe(v: unknown): string {
  if (typeof v === 'string') return `the string ${JSON.stringify(v)}`;
  if (typeof v === 'bigint') return `the integer ${v}`;
  if (typeof v === 'number') {
    if (Number.isNaN(v)) return 'the float nan';
    if (!Number.isFinite(v)) return `the float ${v > 0 ? 'inf' : '-inf'}`;
    return Number.isInteger(v) ? `the integer ${v}` : `the float ${v}`;
  }
  if (typeof v === 'boolean') return `the boolean ${v}`;
  if (v instanceof Date) return `the date-time ${String(v)}`;
  if (Array.isArray(v)) return 'an array';
  if (isTable(v)) return 'a table';
  if (v === undefined) return 'nothing';
  return String(v);
}

/** A key as it would be written in TOML: bare when it can be, quoted otherwise. */
export function keyPath(parent: string, key: string): string {
  const k = /^[A-Za-z0-9_-]+$/.test(key) ? key : JSON.stringify(key);
  return parent === '' ? k : `${parent}.${k}`;
}

function quoteList(values: readonly string[]): string {
  return values.map((v) => JSON.stringify(v)).join(', ');
}

/** Assigns without ever touching a prototype, whatever the key. */
function put(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

// ---------------------------------------------------------------------------
// Options

export function str(o: { default?: string; nonEmpty?: boolean; oneOf?: readonly string[]; check?: (v: string) => string | undefined } = {}): OptionSpec {
  return {
    kind: 'option',
    type: 'string',
    hasDefault: o.default !== undefined,
    defaultValue: o.default,
    run(value, p) {
      if (typeof value !== 'string') fail(p, `expected a string, got ${describe(value)}`);
      if (o.oneOf && !o.oneOf.includes(value)) fail(p, `must be one of ${quoteList(o.oneOf)}, got ${JSON.stringify(value)}`);
      if (o.nonEmpty && value === '') fail(p, 'must not be empty');
      if (o.check) {
        const problem = o.check(value);
        if (problem !== undefined) fail(p, problem);
      }
      return value;
    },
  };
}

/**
 * Whole numbers. smol-toml returns numbers for integers and floats alike (and
 * bigint for integers beyond 2^53 when asked to), so a float is told apart by
 * having a fraction; `1.0` cannot be told from `1` and is accepted.
 */
export function int(o: { default?: number; min?: number; max?: number } = {}): OptionSpec {
  return {
    kind: 'option',
    type: 'integer',
    hasDefault: o.default !== undefined,
    defaultValue: o.default,
    run(value, p) {
      let n: number | bigint;
      if (typeof value === 'bigint') n = value;
      else if (typeof value === 'number' && Number.isInteger(value)) n = value;
      else fail(p, `expected an integer, got ${describe(value)}`);
      const tooSmall = o.min !== undefined && n < o.min;
      const tooBig = o.max !== undefined && n > o.max;
      if (tooSmall || tooBig) {
        const range =
          o.min !== undefined && o.max !== undefined ? `be between ${o.min} and ${o.max}`
          : o.min !== undefined ? `be at least ${o.min}`
          : `be at most ${o.max}`;
        fail(p, `must ${range}, got ${n}`);
      }
      if (typeof n === 'bigint') {
        if (n > BigInt(Number.MAX_SAFE_INTEGER) || n < BigInt(Number.MIN_SAFE_INTEGER)) fail(p, `integer ${n} is too large`);
        return Number(n);
      }
      return n;
    },
  };
}

export function bool(o: { default?: boolean } = {}): OptionSpec {
  return {
    kind: 'option',
    type: 'boolean',
    hasDefault: o.default !== undefined,
    defaultValue: o.default,
    run(value, p) {
      if (typeof value !== 'boolean') fail(p, `expected a boolean (true or false), got ${describe(value)}`);
      return value;
    },
  };
}

/**
 * A file system path, resolved against the config file's directory (never the
 * working directory) and returned absolute. With `exists: true` the path must
 * name an existing file when the config is loaded. A default is resolved too.
 */
export function path(o: { default?: string; exists?: boolean } = {}): OptionSpec {
  const run: Check = (value, p, ctx) => {
    if (typeof value !== 'string') fail(p, `expected a path (a string), got ${describe(value)}`);
    if (value === '') fail(p, 'must not be empty');
    const abs = isAbsolute(value) ? resolve(value) : resolve(ctx.configDir, value);
    if (o.exists) {
      let isFile = false;
      try {
        isFile = statSync(abs).isFile();
      } catch {
        fail(p, `file ${JSON.stringify(abs)} does not exist`);
      }
      if (!isFile) fail(p, `${JSON.stringify(abs)} is not a file`);
    }
    return abs;
  };
  return { kind: 'option', type: 'path', hasDefault: o.default !== undefined, defaultValue: o.default, run };
}

// ---------------------------------------------------------------------------
// Lists, sections, custom

export function list(item: Spec, o: { default?: unknown[]; nonEmpty?: boolean; unique?: boolean } = {}): ListSpec {
  return {
    kind: 'list',
    item,
    nonEmpty: o.nonEmpty ?? false,
    unique: o.unique ?? false,
    hasDefault: o.default !== undefined,
    defaultValue: o.default,
  };
}

/**
 * A table with named items. Keys not in `items` are errors, unless `wildcard`
 * validates them. `default: true` makes a missing section count as an empty
 * table, so the defaults of its items apply.
 */
export function section(
  items: Record<string, Spec>,
  o: { required?: string[]; wildcard?: Spec; process?: (value: any, path: string, ctx: ValidateCtx) => any; default?: boolean } = {},
): SectionSpec {
  for (const r of o.required ?? []) {
    if (!Object.hasOwn(items, r)) throw new Error(`section spec: required item "${r}" is not among its items`);
  }
  return {
    kind: 'section',
    items,
    required: o.required ?? [],
    wildcard: o.wildcard,
    process: o.process,
    hasDefault: o.default ?? false,
    defaultValue: undefined,
  };
}

/**
 * Full control over one value. The function gets the raw TOML value; it is
 * called only when the key is present. A missing key takes `o.default` if one
 * is given (as is, without calling the function) and is left out otherwise.
 */
export function custom(fn: (value: unknown, path: string, ctx: ValidateCtx) => unknown, o: { default?: unknown } = {}): CustomSpec {
  return { kind: 'custom', run: fn, hasDefault: o.default !== undefined, defaultValue: o.default };
}

/**
 * Marks an option accepted only so that a MongooseIM file loads unchanged:
 * it is validated as `spec` says and kept in the config, but nothing in
 * Petrel reads it. Setting it draws a warning naming its path and `reason`;
 * a default it has applies without one. An option that is honoured is not a
 * compatibility option, even when its default is MongooseIM's.
 */
export function compat<S extends Spec>(spec: S, reason: string): S {
  return { ...spec, compat: reason };
}

// ---------------------------------------------------------------------------
// Validation

/**
 * What a missing key turns into: `{ present: false }` when it stays absent.
 * Option and custom defaults are taken as written (a path default is
 * resolved); a defaulted section is validated as an empty table.
 */
function missing(spec: Spec, p: string, ctx: ValidateCtx): { present: boolean; value?: unknown } {
  if (!spec.hasDefault) return { present: false };
  switch (spec.kind) {
    case 'section':
      return { present: true, value: validate(spec, {}, p, ctx) };
    case 'list':
      return { present: true, value: [...(spec.defaultValue as unknown[])] };
    case 'option':
      return { present: true, value: spec.type === 'path' ? spec.run(spec.defaultValue, p, ctx) : spec.defaultValue };
    case 'custom':
      return { present: true, value: spec.defaultValue };
  }
}

function validateSection(spec: SectionSpec, value: unknown, p: string, ctx: ValidateCtx): unknown {
  if (!isTable(value)) fail(p, `expected a table, got ${describe(value)}`);
  const out: Record<string, unknown> = {};
  const problems = new ErrorCollector();
  for (const key of Object.keys(value)) {
    const itemPath = keyPath(p, key);
    const itemSpec = Object.hasOwn(spec.items, key) ? spec.items[key] : spec.wildcard;
    if (itemSpec === undefined) {
      problems.add(new ConfigError(itemPath, 'unknown option'));
      continue;
    }
    if (itemSpec.compat !== undefined) noteIgnored(ctx, { path: itemPath, reason: itemSpec.compat });
    const v = problems.run(() => validate(itemSpec, value[key], itemPath, ctx));
    if (v !== FAILED) put(out, key, v);
  }
  for (const key of Object.keys(spec.items)) {
    if (Object.hasOwn(value, key)) continue;
    const itemPath = keyPath(p, key);
    if (spec.required.includes(key)) {
      problems.add(new ConfigError(itemPath, 'missing required option'));
      continue;
    }
    const m = problems.run(() => missing(spec.items[key], itemPath, ctx));
    if (m !== FAILED && m.present) put(out, key, m.value);
  }
  // A process step sees complete values only: it runs once every item is valid.
  problems.throwIfAny();
  return spec.process ? spec.process(out, p, ctx) : out;
}

function noteIgnored(ctx: ValidateCtx, o: IgnoredOption): void {
  if (ctx.ignored !== undefined) ctx.ignored.push(o);
  else ctx.warnings.push(ignoredWarning(o));
}

function validateList(spec: ListSpec, value: unknown, p: string, ctx: ValidateCtx): unknown[] {
  if (!Array.isArray(value)) fail(p, `expected an array, got ${describe(value)}`);
  if (spec.nonEmpty && value.length === 0) fail(p, 'must not be empty');
  const out: unknown[] = [];
  const problems = new ErrorCollector();
  const seen = new Map<string, number>();
  value.forEach((item, i) => {
    const itemPath = `${p}[${i}]`;
    const v = problems.run(() => validate(spec.item, item, itemPath, ctx));
    if (v === FAILED) return;
    if (spec.unique) {
      const fingerprint = JSON.stringify(v);
      const first = seen.get(fingerprint);
      if (first !== undefined) {
        const what = typeof v === 'object' && v !== null ? 'duplicate' : `duplicate value ${JSON.stringify(v)}`;
        problems.add(new ConfigError(itemPath, `${what}, same as ${p}[${first}]`));
        return;
      }
      seen.set(fingerprint, i);
    }
    out.push(v);
  });
  problems.throwIfAny();
  return out;
}

/**
 * Validates `value` (a TOML value, or undefined when the key is absent)
 * against `spec`, returning the typed value with defaults filled in. Throws a
 * ConfigError naming `path` (or a path below it); when several independent
 * values are wrong, one ConfigError whose `errors` lists each of them.
 */
export function validate(spec: Spec, value: unknown, p: string, ctx: ValidateCtx): any {
  if (value === undefined) {
    const m = missing(spec, p, ctx);
    if (!m.present) fail(p, 'missing required option');
    return m.value;
  }
  switch (spec.kind) {
    case 'option':
    case 'custom':
      return spec.run(value, p, ctx);
    case 'list':
      return validateList(spec, value, p, ctx);
    case 'section':
      return validateSection(spec, value, p, ctx);
  }
}
