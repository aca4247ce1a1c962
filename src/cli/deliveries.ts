// `petrel deliveries`: the event pusher's outbox and dead-letter table, read
// and changed straight in the configured store: the instance's store file
// (WAL lets this run while the server has the file open) or PostgreSQL
// (modules.mod_event_pusher.outbox_backend = "rdbms"). The server reads the
// outbox for due rows every second, so replayed events go out without
// telling it anything.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { PetrelConfig } from '../config/types.ts';
import { SQLITE_FILE } from '../storage/index.ts';
import type { DeadLetterSelector, OutboxAdmin } from '../storage/outbox/types.ts';
import { openSqliteOutboxAdmin } from '../storage/outbox/sqlite-tables.ts';
import { openPostgresOutboxAdmin } from '../storage/outbox/postgres.ts';
import { checkStoreBackend, rdbmsPool } from '../storage/select.ts';
import { ensurePrivateDir, ensurePrivateFile } from '../storage/data-dir.ts';
import { resolveModules } from '../modules/registry.ts';
import type { EventPusherOpts } from '../modules/mod_event_pusher/config.ts';
import { BACKENDS } from '../modules/mod_event_pusher/backends.ts';

export const DELIVERIES_USAGE = `  petrel deliveries [-c FILE]                     queue depth, in flight, retrying, dead-lettered per handler
  petrel deliveries dead-letter list [-c FILE]    one line per dead-lettered event
  petrel deliveries dead-letter replay ID...|--all [-c FILE]   back to the outbox, attempts reset
  petrel deliveries dead-letter purge ID...|--all [-c FILE]    delete`;

export class DeliveriesUsageError extends Error {}

export interface DeliveriesIo {
  loadConfig(file: string | undefined): PetrelConfig;
  out(s: string): void;
  err(s: string): void;
}

function eventPusherOpts(config: PetrelConfig): EventPusherOpts | undefined {
  return resolveModules(config.modules).find(([name]) => name === 'mod_event_pusher')?.[1] as EventPusherOpts | undefined;
}

/** The outbox of the store mod_event_pusher's outbox_backend names. */
async function openAdmin(config: PetrelConfig): Promise<OutboxAdmin> {
  if (eventPusherOpts(config)?.outbox_backend === 'rdbms') {
    checkStoreBackend(config, 'rdbms', 'modules.mod_event_pusher.outbox_backend');
    return openPostgresOutboxAdmin(rdbmsPool(config));
  }
  // Made private before SQLite creates it, should this command be the first to open the store.
  ensurePrivateDir(config.general.data_dir);
  const file = join(config.general.data_dir, SQLITE_FILE);
  ensurePrivateFile(file);
  return openSqliteOutboxAdmin(file);
}

/** The configured handlers whose events go through the outbox, each backend's in its configuration order, as the backends name them. */
function outboxHandlers(config: PetrelConfig): Array<{ index: number; key: string }> {
  const backends = eventPusherOpts(config)?.backends ?? {};
  return Object.entries(backends).flatMap(([name, o]) => BACKENDS[name]?.deliveryRows(o, config) ?? []);
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ').trimEnd()).join('\n');
}

/** Runs `petrel deliveries ...`; returns the exit code. */
export async function runDeliveries(argv: string[], io: DeliveriesIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { config: { type: 'string', short: 'c' }, all: { type: 'boolean' } },
    allowPositionals: true,
  });
  const [sub, action, ...ids] = positionals;
  if (sub === undefined) {
    if (values.all) throw new DeliveriesUsageError('--all goes with dead-letter replay or purge');
    const config = io.loadConfig(values.config);
    const t = await openAdmin(config);
    try {
      const counts = await t.counts();
      const rows = [['HANDLER', 'QUEUED', 'IN_FLIGHT', 'RETRYING', 'DEAD_LETTERED']];
      const zero = { queued: 0, inFlight: 0, retrying: 0, deadLettered: 0 };
      const line = (name: string, c: typeof zero) => rows.push([name, String(c.queued), String(c.inFlight), String(c.retrying), String(c.deadLettered)]);
      const shown = new Set<string>();
      for (const h of outboxHandlers(config)) {
        line(`${h.index} ${h.key}`, counts.get(h.key) ?? zero);
        shown.add(h.key);
      }
      for (const [key, c] of counts) if (!shown.has(key)) line(`- ${key} (not configured)`, c);
      io.out(rows.length === 1 ? 'No handler delivers through the outbox (no at_least_once handler configured, nothing stored).' : table(rows));
    } finally {
      await t.close();
    }
    return 0;
  }
  if (sub !== 'dead-letter') throw new DeliveriesUsageError(`unknown deliveries command "${sub}"`);
  if (action === 'list') {
    if (ids.length > 0 || values.all) throw new DeliveriesUsageError('dead-letter list takes no arguments');
    const t = await openAdmin(io.loadConfig(values.config));
    try {
      for (const d of await t.deadLetters()) {
        io.out(`${d.eventId}  ${d.handler}  attempts=${d.attempts}  error=${JSON.stringify(d.lastError)}  at=${new Date(d.deadAt).toISOString()}`);
      }
    } finally {
      await t.close();
    }
    return 0;
  }
  if (action !== 'replay' && action !== 'purge') throw new DeliveriesUsageError(`unknown dead-letter command "${action ?? ''}" (list, replay or purge)`);
  if (values.all === true && ids.length > 0) throw new DeliveriesUsageError(`dead-letter ${action}: give IDs or --all, not both`);
  if (values.all !== true && ids.length === 0) throw new DeliveriesUsageError(`dead-letter ${action}: give the IDs to ${action}, or --all`);
  const sel: DeadLetterSelector = values.all === true ? { all: true } : { ids };
  const t = await openAdmin(io.loadConfig(values.config));
  let done: string[];
  try {
    done = action === 'replay' ? await t.replay(sel, Date.now()) : await t.purge(sel);
  } finally {
    await t.close();
  }
  const verb = action === 'replay' ? 'Replayed' : 'Purged';
  io.out(`${verb} ${done.length} dead-lettered event(s)${action === 'replay' ? ' (back in the outbox)' : ''}`);
  const missing = ids.filter((id) => !done.includes(id));
  for (const id of missing) io.err(`petrel: no dead-lettered event with id ${id}`);
  return missing.length > 0 ? 1 : 0;
}
