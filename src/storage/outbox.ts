// The outbox now lives in storage/outbox/; these names stay importable from here.
export type * from './outbox/types.ts';
export { OUTBOX_BUSY_TIMEOUT_MS } from './outbox/types.ts';
export { OutboxTables } from './outbox/sqlite-tables.ts';
