// Where a server instance keeps its state: everything under its data directory.
import { join } from 'node:path';
import { openSqliteStorage, type SqliteStorage } from './sqlite.ts';

export type * from './types.ts';
export { openSqliteStorage, type SqliteStorage } from './sqlite.ts';

/** File name of the embedded database inside the data directory. */
export const SQLITE_FILE = 'petrel.sqlite';

/** Opens the default store of a server instance: `<dataDir>/petrel.sqlite`. */
export function openStorage(dataDir: string): SqliteStorage {
  return openSqliteStorage(join(dataDir, SQLITE_FILE));
}
