// Which configured handler answers a request. As in MongooseIM (whose
// mongoose_http_handler:get_routes builds Cowboy's table this way), tables
// for a named host are tried before those for "_", each group in file
// order, and the first whose path matches wins. A path matches literally
// (the request path before "?", as sent, without percent-decoding); a path
// ending in "/[...]", or a handler kind declaring `subtree`, also matches
// every path below it.
import { SUBTREE_SUFFIX } from './config.ts';
import type { HttpHandlerOptions, HttpService } from './types.ts';

export const DEFAULT_METHODS: readonly string[] = ['GET', 'HEAD'];

export interface Route {
  /** Lower-cased; "_" for any. */
  readonly host: string;
  /** The literal part of the configured path. */
  readonly path: string;
  /** Prefix that paths below it start with ("" when only `path` itself matches). */
  readonly below: string;
  readonly methods: readonly string[];
  readonly service: HttpService;
  /** `listen.http[i].handlers.<kind>[j]`, for logs. */
  readonly where: string;
}

/** A route for one handler table. */
export function makeRoute(opts: HttpHandlerOptions, service: HttpService, o: { methods?: readonly string[]; subtree?: boolean; where: string }): Route {
  const pattern = opts.path.endsWith(SUBTREE_SUFFIX);
  const path = pattern ? opts.path.slice(0, -SUBTREE_SUFFIX.length) || '/' : opts.path;
  const subtree = pattern || o.subtree === true;
  return {
    host: opts.host.toLowerCase(),
    path,
    below: subtree ? (path.endsWith('/') ? path : `${path}/`) : '',
    methods: (o.methods ?? DEFAULT_METHODS).map((m) => m.toUpperCase()),
    service,
    where: o.where,
  };
}

/** Named hosts first, then "_", each in the given (file) order. */
export function orderRoutes(routes: readonly Route[]): Route[] {
  return [...routes.filter((r) => r.host !== '_'), ...routes.filter((r) => r.host === '_')];
}

/** The request path without its query string. */
export function requestPath(url: string | undefined): string {
  if (url === undefined) return '/';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

/** The Host header without its port (and without the brackets of an IPv6 literal), lower-cased. */
export function hostName(header: string | undefined): string {
  if (header === undefined) return '';
  if (header.startsWith('[')) {
    const end = header.indexOf(']');
    return (end === -1 ? header.slice(1) : header.slice(1, end)).toLowerCase();
  }
  const colon = header.indexOf(':');
  return (colon === -1 ? header : header.slice(0, colon)).toLowerCase();
}

/** The first route of `ordered` (from orderRoutes) for this Host name and path. */
export function matchRoute(ordered: readonly Route[], host: string, path: string): Route | undefined {
  for (const r of ordered) {
    if (r.host !== '_' && r.host !== host) continue;
    if (r.path === path || (r.below !== '' && path.startsWith(r.below))) return r;
  }
  return undefined;
}

/** 127.0.0.0/8, ::1 and IPv4-mapped loopback: the peers allowed on loopback-only routes. */
export function isLoopback(addr: string | undefined): boolean {
  if (addr === undefined) return false;
  if (addr === '::1') return true;
  const v4 = addr.startsWith('::ffff:') ? addr.slice(7) : addr;
  return v4.startsWith('127.');
}
