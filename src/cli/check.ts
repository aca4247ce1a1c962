// What `petrel check-config` and `petrel start` refuse before anything
// starts, beyond the schema: cross-section rules (a store set to "rdbms"
// needs the pool), and what each module's check finds (an HTTP handler's
// pool and callback module). With `connect`, PostgreSQL is asked too.
// Every problem of the file is reported in one run, each naming its path.
import { ConfigError } from '../config/schema.ts';
import { loadConfigParts } from '../config/load.ts';
import type { PetrelConfig } from '../config/types.ts';
import { MODULES, resolveModules } from '../modules/registry.ts';
import { RDBMS_POOL_TAG } from '../storage/select.ts';
import { openPgPool } from '../storage/postgres.ts';
import { connect as connectNats } from 'nats';
import { crossCheck, loadOptions } from './config.ts';

export interface CheckResult {
  /** The validated configuration, when the schema found nothing wrong. */
  config?: PetrelConfig;
  /** Every problem, in the order found; none: the file would start. */
  errors: ConfigError[];
}

function collect(errors: ConfigError[], fn: () => void): void {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    errors.push(...err.errors);
  }
}

/** The modules' checks over the parts of the file that are valid. */
export async function moduleProblems(
  modules: Readonly<Record<string, unknown>>,
  ctx: { configDir: string; httpPools: ReadonlySet<string> },
): Promise<ConfigError[]> {
  const errors: ConfigError[] = [];
  for (const [name, opts] of resolveModules(modules)) {
    const check = MODULES[name]?.check;
    if (check !== undefined) errors.push(...(await check(opts, ctx)));
  }
  return errors;
}

/** Validates `file` (the shipped one when undefined) and runs every check `start` runs before it starts. */
export async function checkConfig(file: string | undefined, o: { connect?: boolean } = {}): Promise<CheckResult> {
  const parts = loadConfigParts(file, loadOptions());
  const errors = [...parts.errors];
  if (parts.config !== undefined) collect(errors, () => crossCheck(parts.config!));
  if (parts.modules !== undefined) {
    // An unreadable pools section names no pool: its own errors are reported, not one per handler.
    const httpPools = parts.outgoing_pools === undefined ? null : new Set(Object.keys(parts.outgoing_pools.http));
    const found = await moduleProblems(parts.modules, { configDir: parts.configDir, httpPools: httpPools ?? new Set() });
    errors.push(...(httpPools === null ? found.filter((e) => !e.path.endsWith('.pool_name')) : found));
  }
  if (o.connect && parts.config !== undefined && errors.length === 0) {
    const rdbms = parts.config.outgoing_pools.rdbms?.[RDBMS_POOL_TAG];
    if (rdbms !== undefined) {
      try {
        const pool = await openPgPool(rdbms, { max: 1 });
        await pool.end();
      } catch (err) {
        errors.push(new ConfigError(`outgoing_pools.rdbms.${RDBMS_POOL_TAG}.connection`, (err as Error).message));
      }
    }
  }
  const cluster = parts.config?.cluster;
  if (o.connect && parts.config?.general.sm_backend === 'cets' && cluster?.bus !== undefined && errors.length === 0) {
    try {
      const nc = await connectNats({ servers: cluster.bus.split(','), timeout: 5000, reconnect: false, name: 'petrel check-config' });
      await nc.close();
    } catch (err) {
      errors.push(new ConfigError('cluster.bus', `cannot connect: ${(err as Error).message}`));
    }
  }
  for (const e of errors) e.file ??= parts.configPath;
  return parts.config === undefined ? { errors } : { config: parts.config, errors };
}
