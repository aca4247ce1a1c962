// `petrel register`: one account (the password from the command line, a
// prompt that does not echo, or the first line of standard input), or many
// from a file of `user,domain,password` lines in one transaction.
import { readFile } from 'node:fs/promises';
import { read } from 'read';
import type { PetrelConfig } from '../config/types.ts';
import { openStores } from '../storage/open.ts';
import type { NewAccount } from '../storage/types.ts';
import { makeStoredCredentials } from '../xmpp/sasl/index.ts';
import { makeJid, type JID } from '../xmpp/jid.ts';
import { isMixedScript, scriptsOf } from '../xmpp/scripts.ts';
import { notifyServer } from '../control.ts';

/** A problem the operator fixes: printed as it is, never with a stack. */
export class RegisterError extends Error {}

/** The account `user`@`domain` as this server would store it, or a RegisterError saying why not. */
export function accountJid(config: PetrelConfig, user: string, domain: string): JID {
  const d = domain.toLowerCase();
  if (!config.general.hosts.includes(d)) {
    throw new RegisterError(`${domain} is not a host of this server (general.hosts = ${JSON.stringify(config.general.hosts)})`);
  }
  let jid: JID;
  try {
    jid = makeJid(user, d);
  } catch (err) {
    throw new RegisterError(`invalid user name "${user}": ${(err as Error).message}`);
  }
  if (jid.local === '') throw new RegisterError('the user name is empty');
  if (config.general.refuse_mixed_script_localparts && isMixedScript(jid.local)) {
    throw new RegisterError(`invalid user name "${user}": it mixes letters of ${scriptsOf(jid.local).join(', ')} (general.refuse_mixed_script_localparts is set)`);
  }
  return jid;
}

/** Standard input, whole, as text. */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * The password when the command line gives none (or "-"): asked twice on a
 * terminal, without echo; else the first line of standard input.
 */
export async function askPassword(bare: string): Promise<string> {
  if (process.stdin.isTTY) {
    // The prompt goes to stderr, so that stdout carries the result alone.
    const first = await read({ prompt: `Password for ${bare}: `, silent: true, replace: '', output: process.stderr });
    const again = await read({ prompt: 'Again: ', silent: true, replace: '', output: process.stderr });
    if (first !== again) throw new RegisterError('the two passwords differ');
    return first;
  }
  const text = await readStdin();
  const nl = text.indexOf('\n');
  return (nl < 0 ? text : text.slice(0, nl)).replace(/\r$/, '');
}

async function credentialsFor(config: PetrelConfig, password: string) {
  return makeStoredCredentials(password, { format: config.auth.password.format, iterations: config.auth.scram_iterations });
}

/** Registers one account; returns the line to print. */
export async function registerOne(config: PetrelConfig, user: string, domain: string, given: string | undefined): Promise<string> {
  const jid = accountJid(config, user, domain);
  const password = given === undefined || given === '-' ? await askPassword(jid.bare) : given;
  if (password === '') throw new RegisterError('the password is empty');
  const creds = await credentialsFor(config, password);
  const stores = await openStores(config);
  try {
    if (!(await stores.users.createUser(jid.local, jid.domain, creds))) throw new RegisterError(`user ${jid.bare} already exists`);
  } finally {
    await stores.close();
  }
  const told = await notifyServer(config.general.data_dir, { op: 'user_registered', user: jid.local, server: jid.domain });
  return `User ${jid.bare} registered${told ? ' (the running server was told)' : ''}`;
}

/**
 * Registers every account of `file` ("-": standard input), one per line
 * `user,domain,password` (the password is the rest of the line, commas
 * included; blank lines and lines starting with "#" are skipped), all in
 * one transaction: a bad line or an existing account creates none, and the
 * error names the line.
 */
export async function registerFile(config: PetrelConfig, file: string): Promise<string> {
  let text: string;
  try {
    text = file === '-' ? await readStdin() : await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new RegisterError(`${file} ${code === 'ENOENT' ? 'does not exist' : code === 'EISDIR' ? 'is a directory' : code === 'EACCES' ? 'cannot be read (permission denied)' : `cannot be read (${code ?? 'error'})`}`);
  }
  const name = file === '-' ? '<stdin>' : file;
  const accounts: Array<{ jid: JID; password: string; line: number }> = [];
  const seen = new Map<string, number>();
  const problems: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    const n = i + 1;
    if (line.trim() === '' || line.startsWith('#')) return;
    const a = line.indexOf(',');
    const b = a < 0 ? -1 : line.indexOf(',', a + 1);
    if (b < 0) {
      problems.push(`${name}:${n}: expected user,domain,password`);
      return;
    }
    const password = line.slice(b + 1);
    try {
      const jid = accountJid(config, line.slice(0, a).trim(), line.slice(a + 1, b).trim());
      if (password === '') throw new RegisterError('the password is empty');
      const first = seen.get(jid.bare);
      if (first !== undefined) throw new RegisterError(`${jid.bare} is on line ${first} already`);
      seen.set(jid.bare, n);
      accounts.push({ jid, password, line: n });
    } catch (err) {
      if (!(err instanceof RegisterError)) throw err;
      problems.push(`${name}:${n}: ${err.message}`);
    }
  });
  if (problems.length > 0) throw new RegisterError(`${problems.join('\n')}\nno account was created`);
  if (accounts.length === 0) throw new RegisterError(`${name} lists no account`);
  const prepared: NewAccount[] = [];
  for (const a of accounts) prepared.push({ user: a.jid.local, domain: a.jid.domain, creds: await credentialsFor(config, a.password) });
  const stores = await openStores(config);
  try {
    const clash = await stores.users.createUsers(prepared);
    if (clash >= 0) throw new RegisterError(`${name}:${accounts[clash]!.line}: user ${accounts[clash]!.jid.bare} already exists\nno account was created`);
  } finally {
    await stores.close();
  }
  let told = false;
  for (const a of accounts) told = (await notifyServer(config.general.data_dir, { op: 'user_registered', user: a.jid.local, server: a.jid.domain })) || told;
  return `${accounts.length} account(s) registered from ${name}${told ? ' (the running server was told)' : ''}`;
}
