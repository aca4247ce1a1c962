// Finding and loading the callback module a handler names in
// `callback_module`:
//   - "mod_event_pusher_http_defaults", "mod_event_pusher_http_json": built in;
//   - a path (contains "/" or starts with "."): a file, relative to the
//     config file's directory, with or without its .ts/.js/.mjs extension;
//   - a bare name: <name>.ts, <name>.js or <name>.mjs in the config file's
//     directory, else an installed package of that name, looked up from the
//     config file's directory as Node would.
// Modules are imported once, when mod_event_pusher is created.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { fail } from '../../../config/schema.ts';
import { CALLBACK_FUNCTIONS, type CallbackModule } from './callback.ts';
import { defaults } from './defaults.ts';
import { json } from './json.ts';

export const BUILTIN_CALLBACK_MODULES: Readonly<Record<string, CallbackModule>> = {
  mod_event_pusher_http_defaults: defaults,
  mod_event_pusher_http_json: json,
};

const EXTENSIONS = ['.ts', '.js', '.mjs'];

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

function fileWithExtension(base: string): string | undefined {
  if (isFile(base)) return base;
  for (const ext of EXTENSIONS) if (isFile(base + ext)) return base + ext;
  return undefined;
}

/** The entry an ESM-only package exports for `import` ("exports" field, Node's conditions order). */
function esmEntry(pkgDir: string): string | undefined {
  let pkg: { exports?: unknown; main?: string; module?: string };
  try {
    pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
  } catch {
    return undefined;
  }
  const pick = (e: unknown): string | undefined => {
    if (typeof e === 'string') return e;
    if (Array.isArray(e)) {
      for (const x of e) { const r = pick(x); if (r !== undefined) return r; }
      return undefined;
    }
    if (typeof e === 'object' && e !== null) {
      const o = e as Record<string, unknown>;
      if ('.' in o) return pick(o['.']);
      for (const cond of ['node', 'import', 'default']) if (cond in o) { const r = pick(o[cond]); if (r !== undefined) return r; }
    }
    return undefined;
  };
  const rel = pick(pkg.exports) ?? pkg.main ?? 'index.js';
  return fileWithExtension(resolve(pkgDir, rel));
}

function resolvePackage(name: string, configDir: string): string | undefined {
  try {
    return createRequire(join(configDir, 'petrel.config.js')).resolve(name);
  } catch {
    // A package that only exports for `import` cannot be found by require.resolve.
  }
  for (let dir = configDir; ; dir = dirname(dir)) {
    const pkgDir = join(dir, 'node_modules', name);
    if (existsSync(join(pkgDir, 'package.json'))) return esmEntry(pkgDir);
    if (dirname(dir) === dir) return undefined;
  }
}

export type ResolvedCallback = { kind: 'builtin'; module: CallbackModule } | { kind: 'file'; file: string };

/** Where `name` points, or a ConfigError at `tomlPath` when nothing matches. */
export function resolveCallbackModule(name: string, configDir: string, tomlPath: string): ResolvedCallback {
  const builtin = BUILTIN_CALLBACK_MODULES[name];
  if (builtin !== undefined) return { kind: 'builtin', module: builtin };
  const isPath = name.includes('/') || name.startsWith('.') || isAbsolute(name);
  if (isPath) {
    const base = isAbsolute(name) ? name : resolve(configDir, name);
    const file = fileWithExtension(base);
    if (file === undefined) fail(tomlPath, `callback module ${JSON.stringify(name)} not found: no file ${base} (tried ${EXTENSIONS.join(', ')} too)`);
    return { kind: 'file', file };
  }
  const local = fileWithExtension(join(configDir, name));
  if (local !== undefined) return { kind: 'file', file: local };
  const pkg = resolvePackage(name, configDir);
  if (pkg !== undefined) return { kind: 'file', file: pkg };
  return fail(
    tomlPath,
    `callback module ${JSON.stringify(name)} not found: it is not built in (${Object.keys(BUILTIN_CALLBACK_MODULES).join(', ')}), ` +
      `there is no ${name}.ts, ${name}.js or ${name}.mjs in ${configDir}, and no installed package of that name`,
  );
}

/**
 * Imports the callback module and checks it has the three functions, either
 * as named exports or on its default export. Errors name `tomlPath`.
 */
export async function loadCallbackModule(name: string, configDir: string, tomlPath: string): Promise<CallbackModule> {
  const r = resolveCallbackModule(name, configDir, tomlPath);
  if (r.kind === 'builtin') return r.module;
  let ns: Record<string, unknown>;
  try {
    ns = (await import(pathToFileURL(r.file).href)) as Record<string, unknown>;
  } catch (e) {
    return fail(tomlPath, `callback module ${JSON.stringify(name)} (${r.file}) cannot be loaded: ${(e as Error)?.message ?? String(e)}`);
  }
  const def = ns.default;
  const source: Record<string, unknown> =
    typeof ns.shouldMakeReq === 'function' || def === undefined || def === null || typeof def !== 'object' ? ns : (def as Record<string, unknown>);
  const missing = CALLBACK_FUNCTIONS.filter((f) => typeof source[f] !== 'function');
  if (missing.length > 0) {
    fail(tomlPath, `callback module ${JSON.stringify(name)} (${r.file}) does not export ${missing.join(', ')}; a callback module exports shouldMakeReq, prepareHeaders and prepareBody`);
  }
  // Bound to the module object so a default export written as a class instance keeps `this`.
  return {
    shouldMakeReq: (source.shouldMakeReq as CallbackModule['shouldMakeReq']).bind(source),
    prepareHeaders: (source.prepareHeaders as CallbackModule['prepareHeaders']).bind(source),
    prepareBody: (source.prepareBody as CallbackModule['prepareBody']).bind(source),
  };
}
