// MongooseIM's access classes ([acl]) and access rules ([access]), as its
// doc/configuration/acl.md and access.md describe them and src/acl.erl
// evaluates them: a rule is a list of clauses tried in order; the first
// clause whose access class matches the JID gives the value; when none does
// (or the rule is not defined) the value is "deny". The class "all" matches
// every JID and "none" none; a class that is not defined matches nothing
// (MongooseIM's stock file names "admin" and "blocked" without defining them).
// A class is a list of patterns, any of which may match; a pattern matches
// when all of its conditions do.
import { ConfigError, ErrorCollector, custom, describe, fail, isTable, keyPath, type Spec } from './schema.ts';

export type AclMatch = 'all' | 'none' | 'current_domain' | 'any_hosted_domain';

/** One pattern of an access class: every condition present must hold. */
export interface AclPattern {
  match: AclMatch;
  user?: string;
  server?: string;
  resource?: string;
  user_regexp?: RegExp;
  server_regexp?: RegExp;
  resource_regexp?: RegExp;
}

/** A value an access rule gives: "allow", "deny", a number or another string (a shaper name, "default"...). */
export type AccessValue = string | number;

export interface AccessClause {
  acl: string;
  value: AccessValue;
}

/** What a rule is evaluated against: the parts of a JID, already prepared (lower-cased). */
export interface AccessSubject {
  local: string;
  domain: string;
  resource: string;
}

const MATCHES: readonly AclMatch[] = ['all', 'none', 'current_domain', 'any_hosted_domain'];
const PLAIN_KEYS = ['user', 'server', 'resource'] as const;
const PATTERN_KEYS = ['user', 'server', 'resource'] as const;

/**
 * A shell glob as MongooseIM reads it (mongoose_lib:sh_to_awk): `*` any
 * run of characters, `?` one character, `[...]` a class; the whole name must match.
 */
function globToRegExp(glob: string): RegExp {
  let out = '^';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') out += '.*';
    else if (c === '?') out += '.';
    else if (c === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end < 0) {
        out += '\\[';
        continue;
      }
      let body = glob.slice(i + 1, end);
      if (body.startsWith('!')) body = '^' + body.slice(1);
      out += '[' + body.replace(/\\/g, '\\\\') + ']';
      i = end;
    } else out += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
  }
  return new RegExp(out + '$', 'u');
}

function compile(source: string, p: string): RegExp {
  try {
    // MongooseIM's are PCRE (Erlang re), unanchored; JavaScript's syntax agrees on what access classes use.
    return new RegExp(source, 'u');
  } catch (err) {
    fail(p, `not a regular expression Petrel can run: ${(err as Error).message}`);
  }
}

function pattern(value: unknown, p: string): AclPattern {
  if (!isTable(value)) fail(p, `expected a table such as {user = "alice"}, got ${describe(value)}`);
  const out: AclPattern = { match: 'current_domain' };
  const problems = new ErrorCollector();
  for (const [key, v] of Object.entries(value)) {
    const kp = keyPath(p, key);
    problems.run(() => {
      if (typeof v !== 'string') fail(kp, `expected a string, got ${describe(v)}`);
      if (key === 'match') {
        if (!(MATCHES as readonly string[]).includes(v)) fail(kp, `must be one of ${MATCHES.map((m) => JSON.stringify(m)).join(', ')}, got ${JSON.stringify(v)}`);
        out.match = v as AclMatch;
        return;
      }
      for (const part of PATTERN_KEYS) {
        if (key === part) {
          // Compared with prepared JID parts, as MongooseIM compares luser/lserver/lresource.
          out[part] = part === 'resource' ? v : v.toLowerCase();
          return;
        }
        if (key === `${part}_regexp`) {
          out[`${part}_regexp`] = compile(v, kp);
          return;
        }
        if (key === `${part}_glob`) {
          out[`${part}_regexp`] = globToRegExp(v);
          return;
        }
      }
      fail(kp, 'unknown option; a pattern takes match, user, server, resource and their _regexp and _glob forms');
    });
  }
  problems.throwIfAny();
  for (const part of PLAIN_KEYS) {
    if (out[part] !== undefined && out[`${part}_regexp`] !== undefined) fail(p, `${part} and ${part}_regexp/_glob together: keep one`);
  }
  return out;
}

/** [acl]: each access class is a list of patterns. */
export const aclSpec: Spec = custom(
  (value, p) => {
    if (!isTable(value)) fail(p, `expected a table, got ${describe(value)}`);
    const out: Record<string, AclPattern[]> = {};
    const problems = new ErrorCollector();
    for (const [name, patterns] of Object.entries(value)) {
      const np = keyPath(p, name);
      if (name === 'all' || name === 'none') {
        problems.add(new ConfigError(np, `"${name}" is built in and cannot be redefined`));
        continue;
      }
      problems.run(() => {
        if (!Array.isArray(patterns)) fail(np, `expected an array of patterns such as [{user = "alice"}], got ${describe(patterns)}`);
        const list: AclPattern[] = [];
        const inner = new ErrorCollector();
        patterns.forEach((x, i) => inner.run(() => list.push(pattern(x, `${np}[${i}]`))));
        inner.throwIfAny();
        Object.defineProperty(out, name, { value: list, enumerable: true, writable: true, configurable: true });
      });
    }
    problems.throwIfAny();
    return out;
  },
  { default: {} },
);

function clause(value: unknown, p: string): AccessClause {
  if (!isTable(value)) fail(p, `expected a table such as {acl = "all", value = "allow"}, got ${describe(value)}`);
  const problems = new ErrorCollector();
  for (const key of Object.keys(value)) {
    if (key !== 'acl' && key !== 'value') problems.add(new ConfigError(keyPath(p, key), 'unknown option; a clause has acl and value'));
  }
  const acl = value.acl;
  if (acl === undefined) problems.add(new ConfigError(keyPath(p, 'acl'), 'missing required option'));
  else if (typeof acl !== 'string' || acl === '') problems.add(new ConfigError(keyPath(p, 'acl'), `expected the name of an access class, got ${describe(acl)}`));
  let v = value.value;
  if (v === undefined) problems.add(new ConfigError(keyPath(p, 'value'), 'missing required option'));
  else if (typeof v === 'bigint') v = Number(v);
  if (v !== undefined && !(typeof v === 'string' && v !== '') && !(typeof v === 'number' && Number.isInteger(v))) {
    problems.add(new ConfigError(keyPath(p, 'value'), `expected a string or an integer, got ${describe(v)}`));
  }
  problems.throwIfAny();
  return { acl: acl as string, value: v as AccessValue };
}

/** [access]: each rule is a list of clauses. */
export const accessSpec: Spec = custom(
  (value, p) => {
    if (!isTable(value)) fail(p, `expected a table, got ${describe(value)}`);
    const out: Record<string, AccessClause[]> = {};
    const problems = new ErrorCollector();
    for (const [name, clauses] of Object.entries(value)) {
      const np = keyPath(p, name);
      if (name === 'all' || name === 'none') {
        problems.add(new ConfigError(np, `"${name}" is built in (always "allow" / always "deny") and cannot be redefined`));
        continue;
      }
      problems.run(() => {
        if (!Array.isArray(clauses)) fail(np, `expected an array of clauses such as [{acl = "all", value = "allow"}], got ${describe(clauses)}`);
        const list: AccessClause[] = [];
        const inner = new ErrorCollector();
        clauses.forEach((x, i) => inner.run(() => list.push(clause(x, `${np}[${i}]`))));
        inner.throwIfAny();
        Object.defineProperty(out, name, { value: list, enumerable: true, writable: true, configurable: true });
      });
    }
    problems.throwIfAny();
    return out;
  },
  { default: {} },
);

function patternMatches(pt: AclPattern, s: AccessSubject, domain: string, hosts: ReadonlySet<string>): boolean {
  switch (pt.match) {
    case 'none':
      return false;
    case 'current_domain':
      if (s.domain !== domain) return false;
      break;
    case 'any_hosted_domain':
      if (!hosts.has(s.domain)) return false;
      break;
    case 'all':
      break;
  }
  if (pt.user !== undefined && s.local !== pt.user) return false;
  if (pt.server !== undefined && s.domain !== pt.server) return false;
  if (pt.resource !== undefined && s.resource !== pt.resource) return false;
  if (pt.user_regexp !== undefined && !pt.user_regexp.test(s.local)) return false;
  if (pt.server_regexp !== undefined && !pt.server_regexp.test(s.domain)) return false;
  if (pt.resource_regexp !== undefined && !pt.resource_regexp.test(s.resource)) return false;
  return true;
}

/** The [acl] and [access] sections, evaluated as MongooseIM's acl:match_rule does. */
export class AccessRules {
  readonly #acl: Readonly<Record<string, readonly AclPattern[]>>;
  readonly #rules: Readonly<Record<string, readonly AccessClause[]>>;
  readonly #hosts: ReadonlySet<string>;

  constructor(acl: Readonly<Record<string, readonly AclPattern[]>>, rules: Readonly<Record<string, readonly AccessClause[]>>, hosts: Iterable<string>) {
    this.#acl = acl;
    this.#rules = rules;
    this.#hosts = new Set(hosts);
  }

  has(rule: string): boolean {
    return rule === 'all' || rule === 'none' || Object.hasOwn(this.#rules, rule);
  }

  /** Whether the JID belongs to the access class. */
  inClass(name: string, s: AccessSubject, domain = s.domain): boolean {
    if (name === 'all') return true;
    if (name === 'none' || !Object.hasOwn(this.#acl, name)) return false;
    for (const pt of this.#acl[name]!) if (patternMatches(pt, s, domain, this.#hosts)) return true;
    return false;
  }

  /** The rule's value for the JID: the first matching clause's, else `dflt` ("deny" unless told). */
  match(rule: string, s: AccessSubject, dflt: AccessValue = 'deny', domain = s.domain): AccessValue {
    if (rule === 'all') return 'allow';
    if (rule === 'none') return 'deny';
    if (!Object.hasOwn(this.#rules, rule)) return dflt;
    for (const c of this.#rules[rule]!) if (this.inClass(c.acl, s, domain)) return c.value;
    return 'deny';
  }

  /** The clauses of a rule ([] when it is not defined). */
  clauses(rule: string): readonly AccessClause[] {
    return Object.hasOwn(this.#rules, rule) ? this.#rules[rule]! : [];
  }
}

/**
 * A numeric rule (max_user_sessions, max_user_offline_messages): an integer,
 * or "infinity" (0 = no limit); anything else, "deny" included, means the
 * default, as MongooseIM's callers read it.
 */
export function numericValue(v: AccessValue, dflt: number): number {
  if (typeof v === 'number') return v;
  if (v === 'infinity') return 0;
  return dflt;
}

/**
 * Checks that a rule Petrel enforces can be enforced: it is defined (or
 * "all"/"none"), and each of its values is one `accept` takes. Errors name the
 * option that refers to the rule and the clause at fault.
 */
export function checkRule(
  rules: Readonly<Record<string, readonly AccessClause[]>>,
  rule: string,
  where: string,
  what: string,
  accept: (v: AccessValue) => boolean,
  o: { mayBeMissing?: boolean } = {},
): ConfigError[] {
  if (rule === 'all' || rule === 'none') return [];
  if (!Object.hasOwn(rules, rule)) {
    return o.mayBeMissing ? [] : [new ConfigError(where, `no access rule ${JSON.stringify(rule)}; define it in [access] or use "all"`)];
  }
  const out: ConfigError[] = [];
  rules[rule]!.forEach((c, i) => {
    if (!accept(c.value)) {
      out.push(new ConfigError(`access.${rule}[${i}].value`, `${JSON.stringify(c.value)} cannot be enforced here: ${where} needs ${what}`));
    }
  });
  return out;
}
