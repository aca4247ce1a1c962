// `petrel deliveries`: the event pusher's outbox and dead-letter table, read
// and changed straight in the configured store: the instance's store file
// (WAL lets this run while the server has the file open) or PostgreSQL
// (modules.mod_event_pusher.outbox_backend = "rdbms"). The server reads the
// outbox for due rows every second, so replayed events go out without
// telling it anything.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { parseArgs } from 'node:util';
import type { PetrelConfig } from '../config/types.ts';
import { SQLITE_FILE } from '../storage/index.ts';
import { OUTBOX_BUSY_TIMEOUT_MS, OutboxTables, type DeadLetterSelector, type OutboxAdmin } from '../storage/outbox.ts';
import { openPostgresOutboxAdmin } from '../storage/outbox-postgres.ts';
import { rdbmsPool } from '../storage/select.ts';
import { resolveModules } from '../modules/registry.ts';
import type { EventPusherOpts } from '../modules/mod_event_pusher/config.ts';
import { handlerKey } from '../modules/mod_event_pusher/http/backend.ts';

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

function openTables(config: PetrelConfig): OutboxTables {
  const dir = config.general.data_dir;
  mkdirSync(dir, { recursive: true });
  const db = new DatabaseSync(join(dir, SQLITE_FILE), { timeout: OUTBOX_BUSY_TIMEOUT_MS });
  db.exec(`PRAGMA busy_timeout = ${OUTBOX_BUSY_TIMEOUT_MS}`);
  db.exec('PRAGMA journal_mode = WAL');
  return new OutboxTables(db);
}

/** The outbox of the configured store. */
async function openAdmin(config: PetrelConfig): Promise<OutboxAdmin> {
  if ((config.modules.mod_event_pusher as EventPusherOpts | undefined)?.outbox_backend === 'rdbms') return openPostgresOutboxAdmin(rdbmsPool(config));
  const t = openTables(config);
  return {
    counts: async () => t.counts(),
    deadLetters: async () => t.deadLetters(),
    replay: async (sel, now) => t.replay(sel, now),
    purge: async (sel) => t.purge(sel),
    close: async () => t.db.close(),
  };
}

/** The configured handlers whose events go through the outbox, in configuration order. */
function outboxHandlers(config: PetrelConfig): Array<{ index: number; key: string }> {
  const ep = resolveModules(config.modules).find(([name]) => name === 'mod_event_pusher')?.[1] as EventPusherOpts | undefined;
  return (ep?.handlers ?? []).flatMap((h, index) => ((h.delivery ?? 'at_least_once') === 'at_least_once' ? [{ index, key: handlerKey(h) }] : []));
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
        io.out(`${d.webhookId}  ${d.handler}  attempts=${d.attempts}  error=${JSON.stringify(d.lastError)}  at=${new Date(d.deadAt).toISOString()}`);
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
