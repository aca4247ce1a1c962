// Where a server instance keeps its state: everything under its data directory.
export type * from './types.ts';

/** File name of the embedded database inside the data directory. */
export const SQLITE_FILE = 'petrel.sqlite';
