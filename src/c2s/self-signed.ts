// The self-signed certificate a c2s tls table without certfile and keyfile
// uses: made for every domain in general.hosts (one subjectAltName each) and
// kept under the data directory, the key 0600 in the 0700 directory. It is
// made on the first start and by `petrel cert generate`, and made again at
// start-up when it no longer fits: a host was added, it expires within 30
// days, or the files do not parse. A certificate the operator names is never
// touched.
//
// Built with @peculiar/x509 over Node's WebCrypto (ECDSA P-256, SHA-256), so
// no openssl binary is needed where Petrel is installed. The library is
// loaded only when a certificate is made.
import { X509Certificate, createHash, createPrivateKey, randomBytes } from 'node:crypto';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { ensurePrivateDir, ensurePrivateFile, PRIVATE_FILE_MODE } from '../storage/data-dir.ts';

/** Days a made certificate is valid. */
export const SELF_SIGNED_DAYS = 365;
/** A certificate expiring sooner than this is made again at start-up. */
const RENEW_BEFORE_MS = 30 * 86_400_000;

export interface CertificateInfo {
  certfile: string;
  keyfile: string;
  /** SHA-256 fingerprint, "AB:CD:...", as clients that ask to trust a certificate show it. */
  fingerprint: string;
  /** SHA-1 fingerprint, "ab12...": what Profanity shows when it asks. */
  sha1: string;
  /** SHA-256 of the public key (the DER SubjectPublicKeyInfo), "AB:CD:...": what Poezio pins in its certificate option. */
  publicKeySha256: string;
  validTo: string;
  /** The DNS names it is for. */
  hosts: string[];
}

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** A new self-signed certificate and its key, both PEM, for `hosts` (the first is the subject's CN). */
export async function makeSelfSigned(hosts: readonly string[], now = new Date()): Promise<{ cert: string; key: string }> {
  // @peculiar/x509 resolves its parts through tsyringe, which needs the Reflect metadata API.
  await import('reflect-metadata');
  const x509 = await import('@peculiar/x509');
  const keys = await crypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
  // A positive serial number of 16 random bytes (RFC 5280 §4.1.2.2).
  const serial = randomBytes(16);
  serial[0]! &= 0x7f;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial.toString('hex'),
    name: [{ CN: [hosts[0]!] }, { O: ['Petrel (self-signed)'] }],
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + SELF_SIGNED_DAYS * 86_400_000),
    keys,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.SubjectAlternativeNameExtension(hosts.map((h) => ({ type: 'dns' as const, value: h }))),
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    ],
  });
  const pkcs8 = Buffer.from(await crypto.subtle.exportKey('pkcs8', keys.privateKey));
  const key = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ format: 'pem', type: 'pkcs8' }) as string;
  return { cert: cert.toString('pem') + '\n', key };
}

/** Writes `data` to `file` with mode 0600 through a temporary file, so a reader never sees half a file. */
function writePrivate(file: string, data: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    // "wx": a stale temporary file is an error, never a file someone else opened.
    writeFileSync(tmp, data, { mode: PRIVATE_FILE_MODE, flag: 'wx' });
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

function infoOf(certfile: string, keyfile: string, cert: X509Certificate): CertificateInfo {
  const hosts = (cert.subjectAltName ?? '').split(', ').filter((n) => n.startsWith('DNS:')).map((n) => n.slice(4));
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  const publicKeySha256 = createHash('sha256').update(spki).digest('hex').toUpperCase().replace(/(..)(?!$)/g, '$1:');
  return {
    certfile, keyfile, fingerprint: cert.fingerprint256, sha1: cert.fingerprint.replaceAll(':', '').toLowerCase(), publicKeySha256,
    validTo: new Date(cert.validTo).toISOString(), hosts,
  };
}

/** What is at `certfile`, or null when there is no readable certificate there. */
export function readCertificateInfo(certfile: string, keyfile: string): CertificateInfo | null {
  try {
    return infoOf(certfile, keyfile, new X509Certificate(readFileSync(certfile)));
  } catch {
    return null;
  }
}

/** Makes the certificate for `hosts` and writes it to `certfile` and `keyfile` (their directory made 0700), replacing what is there. */
export async function writeSelfSigned(certfile: string, keyfile: string, hosts: readonly string[]): Promise<CertificateInfo> {
  const made = await makeSelfSigned(hosts);
  ensurePrivateDir(dirname(certfile));
  ensurePrivateDir(dirname(keyfile));
  // The key first: a certificate is never on disk beside a key that is not its own for longer than a rename.
  writePrivate(keyfile, made.key);
  writePrivate(certfile, made.cert);
  return infoOf(certfile, keyfile, new X509Certificate(made.cert));
}

/** Why the certificate at `certfile` must be made again for `hosts`, or null when it fits. */
export function selfSignedProblem(certfile: string, keyfile: string, hosts: readonly string[], now = Date.now()): string | null {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(readFileSync(certfile));
    if (!cert.checkPrivateKey(createPrivateKey(readFileSync(keyfile)))) return 'the key is not the certificate\'s';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : 'unreadable';
  }
  const missing = hosts.filter((h) => cert.checkHost(h, { wildcards: false }) === undefined);
  if (missing.length > 0) return `it does not name ${missing.join(', ')}`;
  if (new Date(cert.validTo).getTime() - now < RENEW_BEFORE_MS) return 'it expires within 30 days';
  return null;
}

/**
 * The self-signed certificate at `certfile`/`keyfile`, made first when it
 * is missing or no longer fits `hosts` (`made` then says why).
 */
export async function ensureSelfSigned(
  certfile: string,
  keyfile: string,
  hosts: readonly string[],
): Promise<CertificateInfo & { made: string | null }> {
  const problem = selfSignedProblem(certfile, keyfile, hosts);
  if (problem === null) {
    // Files made by an earlier release, or copied in, get the modes the data directory's files have.
    ensurePrivateDir(dirname(keyfile));
    ensurePrivateFile(keyfile);
    return { ...infoOf(certfile, keyfile, new X509Certificate(readFileSync(certfile))), made: null };
  }
  return { ...(await writeSelfSigned(certfile, keyfile, hosts)), made: problem };
}
