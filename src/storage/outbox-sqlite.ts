// The SQLite outbox now lives in storage/outbox/sqlite.ts; importable from here too.
export { openSqliteOutbox, type SqliteOutbox, type SqliteOutboxOptions } from './outbox/sqlite.ts';
