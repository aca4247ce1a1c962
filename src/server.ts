// Wiring: config → storage → hooks → routing → modules → listeners.
import pino, { type Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { PetrelConfig, GeneralConfig, SaslMechanismName } from './config/types.ts';
import { Hooks } from './hooks/hooks.ts';
import type { UserStore } from './storage/types.ts';
import { openStores } from './storage/open.ts';
import { SessionManager } from './routing/sm.ts';
import { Router } from './routing/router.ts';
import { NO_ROSTER, Presence } from './routing/presence.ts';
import type { Roster } from './routing/types.ts';
import { startC2SListener, type C2SListener, type C2SShared } from './c2s/listener.ts';
import { AuthBans } from './c2s/auth-bans.ts';
import { WorkLimit } from './c2s/auth-work.ts';
import { ConnectionLimits } from './c2s/connection-limits.ts';
import { SenderRates } from './c2s/sender-rates.ts';
import { ensurePrivateDir, privateSecret } from './storage/data-dir.ts';
import { join } from 'node:path';
import { ensureSelfSigned } from './c2s/self-signed.ts';
import { MODULES, resolveModules } from './modules/registry.ts';
import type { ModuleContext, ModuleInstance } from './modules/types.ts';
import type { RosterData } from './modules/mod_roster.ts';
import { dataHooks, openModuleData, removeUserData, storeLocations } from './modules/storage.ts';
import type { OutgoingPools } from './outgoing/types.ts';
import type { SaslMechanismName as WireMechanism } from './xmpp/sasl/index.ts';
import { createOutgoingPools } from './outgoing/pools.ts';
import { createMetricsRegistry } from './metrics/registry.ts';
import { startHttpListeners } from './http/listener.ts';
import { httpConnectionLimits } from './http/connection-slots.ts';
import { httpListenersOf } from './http/config.ts';
import { HTTP_HANDLERS } from './http-handlers.ts';
import { snapshotRoute } from './metrics/prometheus.ts';
import { MetricsSampler } from './metrics/snapshot.ts';
import { sessionMetrics } from './metrics/sessions.ts';
import { C2SMetrics } from './c2s/metrics.ts';
import { startControl, type ControlEvent } from './control.ts';
import { makeJid, type JID } from './xmpp/jid.ts';
import { AccessRules, numericValue } from './config/access.ts';
import { PETREL_VERSION } from './version.ts';
import { isMixedScript } from './xmpp/scripts.ts';
import { clusterMetrics } from './cluster/sessions.ts';
import { startCluster, type RunningCluster } from './cluster/start.ts';

export interface RunningServer {
  config: PetrelConfig;
  logger: Logger;
  c2s: C2SListener[];
  sessions: SessionManager;
  stop(): Promise<void>;
}

/** Under the data directory: the key of the SCRAM salts made up for unknown users. */
export const SCRAM_SECRET_FILE = 'scram-secret';

const LEVELS: Record<GeneralConfig['loglevel'], string> = {
  none: 'silent',
  emergency: 'fatal',
  alert: 'fatal',
  critical: 'fatal',
  error: 'error',
  warning: 'warn',
  notice: 'info',
  info: 'info',
  debug: 'debug',
  all: 'trace',
};

const WIRE_NAMES: Record<SaslMechanismName, WireMechanism> = {
  scram_sha256: 'SCRAM-SHA-256',
  scram_sha1: 'SCRAM-SHA-1',
  plain: 'PLAIN',
};

/**
 * The server's logger. general.log_format "json" writes one JSON object per
 * line; "text" (the default when stdout is a terminal) writes readable lines
 * through pino-pretty, in pino's worker thread. Either way nothing is written
 * synchronously on the message path: JSON goes through an asynchronous
 * destination, text through the transport; both are flushed at exit.
 */
export function createLogger(config: PetrelConfig): Logger {
  const opts = { level: LEVELS[config.general.loglevel], base: { pid: process.pid } };
  const format = config.general.log_format ?? (process.stdout.isTTY ? 'text' : 'json');
  if (format === 'json') return pino(opts, pino.destination({ dest: 1, sync: false }));
  return pino(
    opts,
    pino.transport({
      target: 'pino-pretty',
      options: { destination: 1, colorize: process.stdout.isTTY === true, translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l', ignore: 'pid,hostname' },
    }),
  );
}

/** `petrel register` / `unregister` changed an account while this server runs. */
function accountChanged(e: ControlEvent, s: { hosts: readonly string[]; hooks: Hooks; sm: SessionManager; logger: Logger }): void {
  if (!s.hosts.includes(e.server)) throw new Error(`${e.server} is not a host of this server`);
  const jid = makeJid(e.user, e.server);
  s.logger.info({ what: e.op, user: jid.local, server: jid.domain }, e.op === 'user_registered' ? 'account created' : 'account removed');
  if (e.op === 'user_registered') {
    s.hooks.run(e.op, jid.domain, { user: jid.local, server: jid.domain });
    return;
  }
  for (const session of [...s.sm.byBare(jid.bare)]) session.kick('not-authorized', 'the account was removed');
  // The command-line tool has removed the modules' rows already; run again
  // here, after the sessions ended, it also catches what they wrote meanwhile.
  removeUserData(s.hooks, jid.local, jid.domain).catch((err: unknown) =>
    s.logger.error({ what: 'user_removed_failed', user: jid.local, server: jid.domain, err: String(err) }, 'removing the account\'s data failed'),
  );
}

/**
 * The accounts as logins see them when general.refuse_mixed_script_localparts
 * is set: a mixed-script user name has no credentials, so SASL fails with
 * not-authorized (SCRAM without telling the name from an unknown one).
 */
function singleScriptLogins(users: UserStore, logger: Logger): UserStore {
  return {
    createUser: (user, domain, creds) => users.createUser(user, domain, creds),
    createUsers: (accounts) => users.createUsers(accounts),
    removeUser: (user, domain) => users.removeUser(user, domain),
    userExists: (user, domain) => users.userExists(user, domain),
    countUsers: (domain) => users.countUsers(domain),
    getCredentials(user, domain) {
      if (!isMixedScript(user)) return users.getCredentials(user, domain);
      logger.warn({ what: 'c2s_auth_mixed_script', user, domain }, 'login refused: the user name mixes scripts (general.refuse_mixed_script_localparts)');
      return Promise.resolve(null);
    },
  };
}

/**
 * Bound sessions an account may have: MongooseIM's max_user_sessions access
 * rule when [access] defines it (a number, or "infinity"; anything else means
 * general.max_user_sessions), else general.max_user_sessions.
 */
function maxSessionsOf(config: PetrelConfig, access: AccessRules): number | ((jid: JID) => number) {
  const dflt = config.general.max_user_sessions;
  if (!Object.hasOwn(config.access, 'max_user_sessions')) return dflt;
  return (jid) => numericValue(access.match('max_user_sessions', { local: jid.local, domain: jid.domain, resource: '' }), dflt);
}

export async function startServer(config: PetrelConfig): Promise<RunningServer> {
  const logger = createLogger(config);
  const stores = await openStores(config, { logger });
  const modules = resolveModules(config.modules);
  const data = await openModuleData(stores, modules).catch(async (err: unknown) => {
    await stores.close();
    throw err;
  });
  const hooks = new Hooks((err, hook, owner) =>
    logger.error({ what: 'hook_handler_failed', hook, owner, err: err instanceof Error ? err.stack : String(err) }, 'a hook handler threw; skipped'),
  );
  const hosts = config.general.hosts;
  const access = new AccessRules(config.acl, config.access, hosts);
  const sm = new SessionManager(maxSessionsOf(config, access));
  const router = new Router({ hosts, hooks, sm, users: stores.users, logger });
  // mod_roster's store is the roster presence follows; without the module, an empty one (see NO_ROSTER).
  const roster: Roster = (data.get('mod_roster') as RosterData | undefined)?.store ?? NO_ROSTER;
  const presence = new Presence({ router, sm, roster, users: stores.users, hooks, logger });
  router.presence = presence;
  const metrics: Registry = createMetricsRegistry();
  // Every documented series exists from here, at zero (docs/metrics.md).
  const c2sMetrics = new C2SMetrics(metrics, hosts);
  sessionMetrics(metrics, sm, hosts);
  let cluster: RunningCluster | null = null;
  const clusterCounters = clusterMetrics(metrics, () => cluster?.sessions.liveNodes ?? 1);
  const pools: OutgoingPools = createOutgoingPools(config.outgoing_pools);
  const ctx: ModuleContext = {
    config, hosts, hooks, router, sessions: sm, users: stores.users, stores, logger, metrics, pools, access, features: new Set(),
  };

  const instances: Array<{ name: string; inst: ModuleInstance }> = [];
  const closers: Array<() => Promise<void>> = [];
  const c2s: C2SListener[] = [];
  const stop = async () => {
    for (const l of c2s) await l.close();
    for (const c of closers) await c();
    for (const { name, inst } of instances.reverse()) {
      try {
        await inst.stop?.();
      } catch (err) {
        logger.error({ what: 'module_stop_failed', module: name, err: String(err) }, 'module failed to stop');
      }
    }
    await pools.close();
    await stores.close();
    logger.info({ what: 'server_stopped' }, 'Petrel stopped');
  };

  try {
    if (config.general.sm_backend === 'cets') {
      // Before any module or listener: the other nodes' sessions are in the table from the first login on.
      cluster = await startCluster(config, { sm, router, presence, hooks, logger, metrics: clusterCounters });
      const running = cluster;
      closers.push(() => running.stop());
    }
    for (const reg of dataHooks(data)) hooks.add(reg);
    for (const [name, opts] of modules) {
      const def = MODULES[name];
      if (def === undefined) throw new Error(`modules.${name}: unknown module`);
      const inst = await def.create(ctx, opts, data.get(name));
      instances.push({ name, inst });
      for (const reg of inst.hooks?.() ?? []) hooks.add({ ...reg, owner: reg.owner ?? name });
      for (const iq of inst.iqHandlers?.() ?? []) router.addIqHandler(iq);
    }
    for (const { inst } of instances) await inst.start?.();
    // The sampler feeds `petrel metrics`, read through any HTTP listener.
    const sampler = new MetricsSampler(metrics);
    if (config.listen.http.length > 0) sampler.start();
    closers.push(async () => sampler.stop());
    const mechanisms = config.auth.sasl_mechanisms.map((m) => WIRE_NAMES[m]);
    const g = config.general;
    const authBans = new AuthBans(g.max_auth_failures_per_ip, g.auth_ban_duration);
    const accountLocks = new AuthBans(g.max_auth_failures_per_account, g.account_lock_duration);
    const hashWork = new WorkLimit(g.max_concurrent_password_hashing);
    const connections = new ConnectionLimits(g.max_c2s_connections, g.max_c2s_connections_per_address);
    const senderRates = new SenderRates(c2sMetrics.heavySenderWindows);
    closers.push(async () => senderRates.stop());
    // The fake SCRAM salts of unknown users must not change at a restart, or asking twice would tell them apart.
    ensurePrivateDir(g.data_dir);
    const scramSecret = privateSecret(join(g.data_dir, SCRAM_SECRET_FILE), 32);
    // What every client session shares, over TCP and over WebSocket alike.
    const shared: C2SShared = {
      hosts: new Set(hosts),
      defaultDomain: config.general.default_server_domain,
      mechanisms,
      scramIterations: config.auth.scram_iterations,
      users: config.general.refuse_mixed_script_localparts ? singleScriptLogins(stores.users, logger) : stores.users,
      sm,
      router,
      presence,
      hooks,
      logger,
      authBans,
      accountLocks,
      hashWork,
      scramSecret,
      connections,
      senderRates,
      metrics: c2sMetrics,
      access,
    };
    const http = await startHttpListeners(httpListenersOf(config), {
      handlers: HTTP_HANDLERS, ctx: { logger, metrics, c2s: shared }, logger, loopbackRoutes: [snapshotRoute(sampler, logger)],
      connections: shared.connections === undefined ? undefined : httpConnectionLimits(shared.connections, shared.metrics),
    });
    closers.push(() => http.close());
    closers.push(await startControl(config.general.data_dir, (e) => accountChanged(e, { hosts, hooks, sm, logger }), logger));
    // The self-signed certificate of tls tables without certfile/keyfile, made or renewed before any listener uses it.
    const selfSigned = new Set<string>();
    for (const l of config.listen.c2s) {
      if (l.tls?.self_signed !== true || selfSigned.has(l.tls.certfile)) continue;
      selfSigned.add(l.tls.certfile);
      const c = await ensureSelfSigned(l.tls.certfile, l.tls.keyfile, hosts);
      logger.info(
        { what: c.made === null ? 'tls_certificate_loaded' : 'tls_certificate_created', reason: c.made ?? undefined, certfile: c.certfile, keyfile: c.keyfile, hosts, sha256: c.fingerprint, valid_to: c.validTo },
        c.made === null ? 'self-signed certificate in use' : 'self-signed certificate created',
      );
    }
    for (const l of config.listen.c2s) {
      c2s.push(await startC2SListener(l, shared, config.shaper));
    }
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }

  logger.info(
    {
      what: 'server_started',
      version: PETREL_VERSION,
      hosts,
      data_dir: config.general.data_dir,
      config: config.configPath,
      c2s: c2s.map((l) => `${l.config.ip_address}:${l.port()}${l.config.tls ? ` (${l.config.tls.mode})` : ' (plaintext)'}`),
      modules: instances.map((i) => i.name),
      stores: storeLocations(config),
      cluster: cluster?.node,
    },
    'Petrel started',
  );
  return { config, logger, c2s, sessions: sm, stop };
}
