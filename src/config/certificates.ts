// Checks of the PEM files a TLS table names, made when the configuration is
// loaded, so that `petrel check-config` refuses what `petrel start` would: a
// file that cannot be read, one that holds no certificate or no private key,
// or a key that does not belong to the certificate.
import { readFileSync } from 'node:fs';
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { ConfigError, ErrorCollector, fail } from './schema.ts';

function readPem(file: string, p: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' ? 'does not exist'
      : code === 'EISDIR' ? 'is a directory, not a file'
      : code === 'EACCES' ? 'cannot be read (permission denied)'
      : `cannot be read (${code ?? 'unknown error'})`;
    return fail(p, `file ${JSON.stringify(file)} ${why}`);
  }
}

/** The first certificate of a PEM chain, or a ConfigError at `p`. */
export function readCertificate(file: string, p: string): X509Certificate {
  const pem = readPem(file, p);
  try {
    return new X509Certificate(pem);
  } catch {
    return fail(p, `${JSON.stringify(file)} holds no PEM certificate`);
  }
}

/** The private key of a PEM file (encrypted with `password` when given), or a ConfigError at `p`. */
export function readPrivateKey(file: string, p: string, password?: string): KeyObject {
  const pem = readPem(file, p);
  try {
    return createPrivateKey(password === undefined ? { key: pem } : { key: pem, passphrase: password });
  } catch {
    return fail(p, `${JSON.stringify(file)} holds no PEM private key${password === undefined ? ' (or the key is encrypted and no password is set)' : ' that this password opens'}`);
  }
}

/**
 * Checks that `certfile` holds a certificate, `keyfile` a private key, and
 * that the key is the certificate's. Errors name `<p>.certfile` and
 * `<p>.keyfile`; both files are checked in one run.
 */
export function checkCertificatePair(certfile: string, keyfile: string, p: string, password?: string): void {
  const problems = new ErrorCollector();
  const cert = problems.run(() => readCertificate(certfile, `${p}.certfile`));
  const key = problems.run(() => readPrivateKey(keyfile, `${p}.keyfile`, password));
  problems.throwIfAny();
  if (!(cert as X509Certificate).checkPrivateKey(key as KeyObject)) {
    throw new ConfigError(`${p}.keyfile`, `the key in ${JSON.stringify(keyfile)} does not belong to the certificate in ${JSON.stringify(certfile)}`);
  }
}
