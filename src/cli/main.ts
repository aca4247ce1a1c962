// The `petrel` command.
import { parseArgs } from 'node:util';
import { ConfigError, ignoredWarning } from '../config/schema.ts';
import { missingWarning } from '../config/mongooseim.ts';
import type { PetrelConfig } from '../config/types.ts';
import { loadConfig } from './config.ts';
import { registerFile, registerOne, RegisterError } from './register.ts';
import { checkConfig } from './check.ts';
import { startServer, type RunningServer } from '../server.ts';
import { openStores } from '../storage/open.ts';
import { Hooks } from '../hooks/hooks.ts';
import { resolveModules } from '../modules/registry.ts';
import { dataHooks, openModuleData, removeUserData } from '../modules/storage.ts';
import { makeJid } from '../xmpp/jid.ts';
import { fetchMetricsSnapshot, MetricsUnavailableError } from '../metrics/client.ts';
import { formatMetricsTable } from '../metrics/snapshot.ts';
import { notifyServer } from '../control.ts';
import { DELIVERIES_USAGE, DeliveriesUsageError, runDeliveries } from './deliveries.ts';
import { PETREL_VERSION } from '../version.ts';
import { ClusterUsageError, clusterTable } from './cluster.ts';
import { SELF_SIGNED_CERTFILE, SELF_SIGNED_KEYFILE } from '../config/core-spec.ts';
import { readCertificateInfo, writeSelfSigned, type CertificateInfo } from '../c2s/self-signed.ts';
import { ensurePrivateDir } from '../storage/data-dir.ts';
import { join } from 'node:path';

const USAGE = `usage:
  petrel start [-c FILE]                          run the server in the foreground
  petrel register USER DOMAIN [PASSWORD|-] [-c FILE]
                                                  create an account; without PASSWORD (or with -)
                                                  it is asked for (no echo), or read from stdin
  petrel register --file CSV [-c FILE]            create the accounts of CSV (lines user,domain,password;
                                                  - for stdin) in one transaction: all or none
  petrel unregister USER DOMAIN [-c FILE]         remove an account and its data
  petrel check-config [--connect] [-c FILE]       validate a configuration file (--connect: PostgreSQL and the cluster bus too)
  petrel cert generate [-c FILE]                  make a new self-signed certificate for the hosts
  petrel cert show [-c FILE]                      the self-signed certificate's files and SHA-256 fingerprint
  petrel metrics [-c FILE]                        the event pusher's metrics from the running server
  petrel cluster [-c FILE]                        the cluster's nodes (name, address, last heartbeat, live/dead)
  petrel --version                                the version of this installation
${DELIVERIES_USAGE}
Without -c, the shipped default configuration (config/petrel.toml) is used.`;

class UsageError extends Error {}

function fail(message: string, code = 1): never {
  process.stderr.write(`petrel: ${message}\n`);
  process.exit(code);
}

function parse(argv: string[], positionals: number, names: string, flags: readonly string[] = []) {
  const { values, positionals: pos } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string', short: 'c' },
      help: { type: 'boolean', short: 'h' },
      ...Object.fromEntries(flags.map((f) => [f, { type: 'boolean' as const }])),
    },
    allowPositionals: true,
  });
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    process.exit(0);
  }
  if (pos.length !== positionals) throw new UsageError(`expected ${names || 'no arguments'}`);
  return { config: values.config as string | undefined, args: pos, flags: values as Record<string, unknown> };
}

/** register USER DOMAIN [PASSWORD|-] or register --file FILE. */
function parseRegister(argv: string[]) {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' }, file: { type: 'string', short: 'f' } },
    allowPositionals: true,
  });
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    process.exit(0);
  }
  if (values.file !== undefined) {
    if (positionals.length > 0) throw new UsageError('register --file takes no USER, DOMAIN or PASSWORD');
  } else if (positionals.length < 2 || positionals.length > 3) {
    throw new UsageError('expected USER DOMAIN [PASSWORD], or --file CSV');
  }
  return { config: values.config, args: positionals, flags: values };
}

/** Every problem of a configuration, one line each, then exit 1. */
function failConfig(errors: readonly ConfigError[]): never {
  fail(errors.map((e) => `configuration error: ${e.message}`).join('\npetrel: '));
}

function hostOf(config: PetrelConfig, domain: string): string {
  const d = domain.toLowerCase();
  if (!config.general.hosts.includes(d)) fail(`${domain} is not a host of this server (general.hosts = ${JSON.stringify(config.general.hosts)})`);
  return d;
}

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'start': {
      const { config: file } = parse(rest, 0, '');
      // What check-config refuses, start refuses, all of it at once, before anything starts.
      const checked = await checkConfig(file);
      if (checked.errors.length > 0 || checked.config === undefined) failConfig(checked.errors);
      const config = checked.config;
      for (const w of config.warnings) process.stderr.write(`petrel: warning: ${w}\n`);
      // Signals are handled from before the start: one that arrives while the
      // server starts (its start-up line may already be out) stops it as soon
      // as it has started.
      let server: RunningServer | null = null;
      let stopping = false;
      let pending: string | null = null;
      const shutdown = (signal: string) => {
        if (server === null) {
          pending ??= signal;
          return;
        }
        if (stopping) return;
        stopping = true;
        const s = server;
        s.logger.info({ what: 'server_stopping', signal }, 'stopping');
        // A stop that cannot finish (a stuck peer or store) must not keep the process alive.
        setTimeout(() => {
          s.logger.error({ what: 'server_stop_timeout' }, 'stop did not finish within 12 s; exiting');
          process.exit(1);
        }, 12_000).unref();
        s.stop().then(
          () => process.exit(0),
          (err) => {
            s.logger.error({ what: 'server_stop_failed', err: String(err) }, 'stop failed');
            process.exit(1);
          },
        );
      };
      process.on('SIGINT', () => shutdown('SIGINT'));
      process.on('SIGTERM', () => shutdown('SIGTERM'));
      // A promise some path forgot to handle is a bug to log, not a reason to
      // drop every connection: Node would otherwise exit on it.
      process.on('unhandledRejection', (reason: unknown) => {
        const err = reason instanceof Error ? (reason.stack ?? reason.message) : String(reason);
        if (server !== null) server.logger.error({ what: 'unhandled_rejection', err }, 'a rejected promise was not handled; the server goes on');
        else process.stderr.write(`petrel: unhandled rejection: ${err}\n`);
      });
      server = await startServer(config);
      for (const o of config.ignored) {
        server.logger.warn({ what: 'config_option_ignored', option: o.path, reason: o.reason }, ignoredWarning(o));
      }
      // The MongooseIM features this file configures and Petrel lacks, together, one line each.
      for (const f of config.missing) {
        server.logger.warn({ what: 'config_feature_not_implemented', feature: f.feature, loses: f.loses, options: f.paths }, missingWarning(f));
      }
      if (pending !== null) shutdown(pending);
      return;
    }
    case 'register': {
      const { config: file, args, flags } = parseRegister(rest);
      const config = loadConfig(file);
      const line = typeof flags.file === 'string' ? await registerFile(config, flags.file) : await registerOne(config, args[0]!, args[1]!, args[2]);
      process.stdout.write(line + '\n');
      return;
    }
    case 'unregister': {
      const { config: file, args } = parse(rest, 2, 'USER DOMAIN');
      const [user, domain] = args as [string, string];
      const config = loadConfig(file);
      const host = hostOf(config, domain);
      let jid;
      try {
        jid = makeJid(user, host);
      } catch (err) {
        fail(`invalid user name "${user}": ${(err as Error).message}`);
      }
      const stores = await openStores(config);
      try {
        if (!(await stores.users.removeUser(jid.local, jid.domain))) fail(`user ${jid.bare} does not exist`);
        // The account's data in every module goes as the server removes it:
        // the modules' stores (not the whole server) and their user_removed
        // handlers, so that it goes whether or not a server runs.
        const hookErrors: unknown[] = [];
        const hooks = new Hooks((err) => hookErrors.push(err));
        for (const reg of dataHooks(await openModuleData(stores, resolveModules(config.modules)))) hooks.add(reg);
        await removeUserData(hooks, jid.local, jid.domain);
        if (hookErrors.length > 0) throw hookErrors[0];
      } finally {
        await stores.close();
      }
      const told = await notifyServer(config.general.data_dir, { op: 'user_removed', user: jid.local, server: jid.domain });
      process.stdout.write(`User ${jid.bare} unregistered${told ? ' (its sessions on the running server were closed)' : ''}\n`);
      return;
    }
    case 'check-config': {
      const { config: file, flags } = parse(rest, 0, '', ['connect']);
      const checked = await checkConfig(file, { connect: flags.connect === true });
      if (checked.errors.length > 0 || checked.config === undefined) failConfig(checked.errors);
      const config = checked.config;
      for (const w of config.warnings) process.stderr.write(`petrel: warning: ${w}\n`);
      for (const o of config.ignored) process.stderr.write(`petrel: warning: ${ignoredWarning(o)}\n`);
      for (const f of config.missing) process.stderr.write(`petrel: warning: ${missingWarning(f)}\n`);
      const modules = Object.keys(config.modules);
      process.stdout.write(
        `${config.configPath}: OK (hosts: ${config.general.hosts.join(', ')}; ${config.listen.c2s.length} c2s listener(s); ` +
          `${config.listen.http.length} http listener(s); modules: ${modules.length ? modules.join(', ') : 'none'})\n`,
      );
      return;
    }
    case 'cert': {
      const [sub, ...more] = rest;
      if (sub !== 'generate' && sub !== 'show') throw new UsageError(sub === undefined ? 'cert needs a subcommand: generate or show' : `unknown cert subcommand "${sub}"`);
      const { config: file } = parse(more, 0, '');
      const config = loadConfig(file);
      const certfile = join(config.general.data_dir, SELF_SIGNED_CERTFILE);
      const keyfile = join(config.general.data_dir, SELF_SIGNED_KEYFILE);
      let c: CertificateInfo;
      if (sub === 'show') {
        const shown = readCertificateInfo(certfile, keyfile);
        if (shown === null) fail(`there is no certificate at ${certfile} yet: petrel start or petrel cert generate makes it`);
        c = shown;
      } else {
        ensurePrivateDir(config.general.data_dir);
        c = await writeSelfSigned(certfile, keyfile, config.general.hosts);
      }
      const users = config.listen.c2s.filter((l) => l.tls?.self_signed === true).length;
      process.stdout.write(
        `Self-signed certificate for ${c.hosts.join(', ')}, valid until ${c.validTo}\n` +
          `  certificate: ${c.certfile}\n  key:         ${c.keyfile}\n  SHA-256:     ${c.fingerprint}\n` +
          `  SHA-1:       ${c.sha1} (Profanity shows this one)\n` +
          `  public key:  ${c.publicKeySha256} (SHA-256 of the key, Poezio's certificate option)\n` +
          (users > 0
            ? sub === 'generate' ? `${users} c2s listener(s) use it from their next start.\n` : ''
            : 'No c2s listener of this configuration uses it: leave certfile and keyfile out of a tls table to use it.\n'),
      );
      return;
    }
    case 'metrics': {
      const { config: file } = parse(rest, 0, '');
      const config = loadConfig(file);
      try {
        process.stdout.write(formatMetricsTable(await fetchMetricsSnapshot(config)) + '\n');
      } catch (err) {
        if (err instanceof MetricsUnavailableError) fail(err.message);
        throw err;
      }
      return;
    }
    case 'cluster': {
      const { config: file } = parse(rest, 0, '');
      const config = loadConfig(file);
      try {
        process.stdout.write((await clusterTable(config)) + '\n');
      } catch (err) {
        if (err instanceof ClusterUsageError) fail(err.message);
        throw err;
      }
      return;
    }
    case 'deliveries': {
      if (rest.includes('-h') || rest.includes('--help')) {
        process.stdout.write(USAGE + '\n');
        return;
      }
      const code = await runDeliveries(rest, {
        loadConfig,
        out: (s) => process.stdout.write(s + '\n'),
        err: (s) => process.stderr.write(s + '\n'),
      });
      if (code !== 0) process.exit(code);
      return;
    }
    case '--version':
      process.stdout.write(PETREL_VERSION + '\n');
      return;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE + '\n');
      return;
    default:
      throw new UsageError(`unknown command "${cmd}"`);
  }
}

/** parseArgs' own errors, in Petrel's words (its messages suggest syntax that does not apply here). */
function usageOf(err: unknown): string | null {
  if (!(err instanceof Error) || !('code' in err)) return null;
  const option = /'(-[^', ]+)/.exec(err.message)?.[1];
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return option === undefined ? 'unknown option' : `unknown option ${option}`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return option === undefined ? 'an option lacks its value' : `option ${option} needs a value`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return 'unexpected argument';
    default:
      return null;
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof UsageError || err instanceof DeliveriesUsageError) fail(`${err.message}\n${USAGE}`, 2);
  const usage = usageOf(err);
  if (usage !== null) fail(`${usage}\n${USAGE}`, 2);
  if (err instanceof RegisterError) fail(err.message);
  // One line per problem, so that a file with several shows them all at once.
  if (err instanceof ConfigError) failConfig(err.errors);
  if (err instanceof Error && 'code' in err && err.code === 'EADDRINUSE') fail(`cannot listen: ${err.message}`);
  // Errors from the system or a database (they carry a code) are the operator's to fix: the message says it.
  // Anything else is a bug in Petrel: the stack helps to report it.
  if (err instanceof Error && 'code' in err) fail(err.message);
  fail(err instanceof Error ? (err.stack ?? err.message) : String(err));
});
