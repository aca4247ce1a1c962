// How a pool's `path_prefix` and a caller's `path` become the request target.
//
// MongooseIM strips one leading "/" from the handler's path when the config is
// read (mod_event_pusher_http:fix_path/1) and mongoose_http_client then glues
// the prefix and that path together byte for byte. With the documented
// example (path_prefix = "/webservice", path = "/notifications") that code
// would produce "/webservicenotifications", while the documentation promises
// ".../webservice/notifications". Petrel keeps every result of the code that
// is already a sensible path and follows the documentation where the two
// disagree: when the prefix does not end in "/" and the path is not empty,
// exactly one "/" separates them.

/** MongooseIM's fix_path/1: drops one leading "/" (the prefix supplies it). */
export function fixPath(path: string): string {
  return path.charCodeAt(0) === 47 /* "/" */ ? path.slice(1) : path;
}

/** A prefix always starts with "/": an HTTP/1.1 origin-form target must (RFC 9112 §3.2.1). */
export function normalizePrefix(prefix: string): string {
  if (prefix === '') return '/';
  return prefix.charCodeAt(0) === 47 ? prefix : '/' + prefix;
}

/**
 * The request target for `path` under `prefix`:
 *   prefix "/"            + "notifications" | "/notifications" → "/notifications"
 *   prefix "/webservice"  + "notifications" | "/notifications" → "/webservice/notifications"
 *   prefix "/webservice/" + "notifications" | "/notifications" → "/webservice/notifications"
 *   any prefix + ""                                            → the prefix itself
 */
export function joinPath(prefix: string, path: string): string {
  const pre = normalizePrefix(prefix);
  const p = fixPath(path);
  if (p === '') return pre;
  return pre.charCodeAt(pre.length - 1) === 47 ? pre + p : pre + '/' + p;
}

/**
 * Checks a pool's `host` ("http[s]://host[:port]"); returns an error message
 * or undefined. A path, query, fragment or credentials belong elsewhere.
 */
export function checkHostUrl(host: string): string | undefined {
  let u: URL;
  try {
    u = new URL(host);
  } catch {
    return `"${host}" is not a URL; expected "http[s]://host[:port]"`;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    return `"${host}" has scheme "${u.protocol.slice(0, -1)}"; expected "http[s]://host[:port]"`;
  }
  if (u.username !== '' || u.password !== '') return `"${host}" must not carry credentials`;
  if (u.pathname !== '/' || u.search !== '' || u.hash !== '') {
    return `"${host}" must be "http[s]://host[:port]" only; put a path into path_prefix`;
  }
  return undefined;
}

/**
 * Requests in flight at once on one HTTP connection (connection.pipelining,
 * Petrel's option). Several requests share each write, which on loopback
 * and on a busy sender costs far less than a write per request; a slow
 * answer delays at most the requests queued behind it on its connection.
 */
export const DEFAULT_PIPELINING = 8;
