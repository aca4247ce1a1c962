// The PostgreSQL outbox now lives in storage/outbox/postgres.ts; importable from here too.
export { openPostgresOutbox, openPostgresOutboxAdmin, migrateOutbox, type PostgresOutbox, type PostgresOutboxOptions } from './outbox/postgres.ts';
