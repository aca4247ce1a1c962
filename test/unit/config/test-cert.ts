// A real certificate and key (PEM) for config tests: tls tables are checked
// by parsing the files they name.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeSelfSigned } from '../../../src/c2s/self-signed.ts';

export const PAIR = await makeSelfSigned(['localhost']);

/** Writes cert.pem and key.pem (a matching pair) into `dir`. */
export function writeCertPair(dir: string, names: { cert?: string; key?: string } = {}): void {
  writeFileSync(join(dir, names.cert ?? 'cert.pem'), PAIR.cert);
  writeFileSync(join(dir, names.key ?? 'key.pem'), PAIR.key);
}
