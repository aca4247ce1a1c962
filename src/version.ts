// Petrel's version, read from package.json when first imported so that it is
// written in one place. package.json is one level above this file both in a
// checkout (src/) and in the installed package (dist/).
import { readFileSync } from 'node:fs';

export const PETREL_VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
