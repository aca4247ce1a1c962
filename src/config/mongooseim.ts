// What of a MongooseIM configuration Petrel does not implement, and what the
// operator loses by it. A feature whose absence only removes something
// (vCards, archives, BOSH, s2s...) is accepted with one warning, saying what
// is lost; anything that restricts access or protects data is implemented or
// refused, never passed over. docs/mongooseim-config.md lists all of it.
import { custom, type Spec, type ValidateCtx } from './schema.ts';

/** A MongooseIM feature the file configures and Petrel does not have. */
export interface MissingFeature {
  /** Its name as the operator knows it: a module, listener or section name. */
  readonly feature: string;
  /** What the operator loses, in one sentence. */
  readonly loses: string;
  /** TOML paths where the file configures it. */
  readonly paths: string[];
}

/** The warning a missing feature draws: "mod_vcard: not implemented; vCard requests get service-unavailable". */
export function missingWarning(f: MissingFeature): string {
  return `${f.feature}: not implemented; ${f.loses} (${f.paths.join(', ')})`;
}

/** Records the feature once, however many places configure it. */
export function noteMissing(ctx: ValidateCtx, feature: string, loses: string, path: string): void {
  const list = ctx.missing;
  if (list === undefined) {
    ctx.warnings.push(missingWarning({ feature, loses, paths: [path] }));
    return;
  }
  const known = list.find((f) => f.feature === feature);
  if (known !== undefined) known.paths.push(path);
  else list.push({ feature, loses, paths: [path] });
}

/**
 * A value for a feature Petrel does not implement: accepted whatever its
 * options (they configure nothing here), with the feature's one warning.
 */
export function notImplemented(feature: string, loses: string): Spec {
  return custom((value, p, ctx) => {
    noteMissing(ctx, feature, loses, p);
    return value;
  });
}

const SU = 'get service-unavailable';

/**
 * MongooseIM modules Petrel does not have, with what their absence costs.
 * Each IQ namespace they would answer gets service-unavailable from the
 * router, as any IQ nobody handles (RFC 6120 §8.4).
 */
export const MONGOOSEIM_MODULES: Readonly<Record<string, string>> = {
  mod_adhoc: `ad-hoc commands (XEP-0050) ${SU}`,
  mod_amp: 'advanced message processing rules (XEP-0079) in messages are not applied',
  mod_auth_token: `token requests (XEP-0399-style) ${SU}`,
  mod_bind2: 'Bind 2 (XEP-0386) is not offered; clients bind a resource the RFC 6120 way',
  mod_blocking: `blocking requests (XEP-0191) ${SU}; users cannot block contacts`,
  mod_cache_users: 'account lookups are not cached (each goes to the store)',
  mod_caps: 'entity capabilities (XEP-0115) are not tracked by the server',
  mod_extdisco: `external service discovery (XEP-0215) ${SU}`,
  mod_fast_auth_token: 'FAST (XEP-0484) tokens are not offered; clients log in with their password',
  mod_global_distrib: 'global distribution across data centres is not available',
  mod_http_upload: `HTTP file upload slot requests (XEP-0363) ${SU}`,
  mod_inbox: `inbox requests ${SU}`,
  mod_jingle_sip: 'Jingle to SIP translation is not available',
  mod_keystore: 'nothing beyond the modules that would use it',
  mod_last: `last activity requests (XEP-0012) ${SU}`,
  mod_mam: `message archive requests (XEP-0313) ${SU}; no history is kept`,
  mod_muc_log: 'room logs are not written',
  mod_offline_chatmarkers: 'chat markers are not kept for offline users',
  mod_presence: 'nothing: presence is part of the core in Petrel',
  mod_privacy: `privacy lists (XEP-0016) ${SU}; users cannot block contacts with them`,
  mod_private: `private XML storage requests (XEP-0049) ${SU}`,
  mod_pubsub: `publish-subscribe and PEP (XEP-0060, XEP-0163) ${SU}`,
  mod_register: `in-band registration requests (XEP-0077) ${SU}; accounts are made with petrel register`,
  mod_sic: `server IP check requests (XEP-0279) ${SU}`,
  mod_smart_markers: `smart markers requests ${SU}`,
  mod_time: `entity time requests (XEP-0202) ${SU}`,
  mod_vcard: `vCard requests (XEP-0054) ${SU}`,
  mod_version: `software version requests (XEP-0092) ${SU}`,
};

/**
 * MongooseIM modules that restrict access or protect data: without them
 * Petrel would let through what the file forbids, so they are errors.
 */
export const MONGOOSEIM_REFUSED_MODULES: Readonly<Record<string, string>> = {
  mod_domain_isolation: 'it stops messages between domains, and Petrel cannot enforce that',
  mod_shared_roster_ldap: 'it reads rosters from LDAP, which Petrel cannot reach',
};

/** MongooseIM [[listen.http]] handler kinds Petrel does not serve: a listener with only these is not opened. */
export const MONGOOSEIM_HTTP_HANDLERS: Readonly<Record<string, [feature: string, loses: string]>> = {
  mongoose_bosh_handler: ['BOSH', 'BOSH (XEP-0206) clients cannot connect over HTTP; the route is not served'],
  mongoose_graphql_handler: ['GraphQL', 'the GraphQL admin and user API is not served; accounts are managed with the petrel command'],
  mongoose_admin_api: ['REST admin API', 'the REST admin API is not served; accounts are managed with the petrel command'],
  mongoose_client_api: ['REST client API', 'the REST client API is not served'],
  mongoose_api: ['REST API', 'the REST API is not served'],
  mongoose_domain_handler: ['domain API', 'the dynamic domain API is not served'],
};

/** MongooseIM [services.*] Petrel does not have. */
export const MONGOOSEIM_SERVICES: Readonly<Record<string, string>> = {
  service_bosh: 'BOSH sessions are not kept (BOSH is not served)',
  service_mongoose_system_metrics: 'nothing: no usage report is sent anywhere',
  service_domain_db: 'domains cannot be added at run time; the domains served are general.hosts',
  service_admin_extra: 'the extra admin commands are not available',
  service_translations: 'error texts are in English only',
};
