import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ConfigError, ErrorCollector, FAILED, bool, compat, custom, describe, fail, ignoredWarning, int, list, path, section, str, validate,
  type ValidateCtx,
} from '../../../src/config/schema.ts';

const ctx = (): ValidateCtx => ({ configDir: '/etc/petrel', warnings: [] });

/** Asserts that validation fails with exactly this message. */
function rejects(fn: () => unknown, message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.message, message);
    assert.equal(err.code, 'config_invalid');
    return true;
  });
}

test('fail throws a ConfigError carrying the path and the message', () => {
  try {
    fail('general.hosts[0]', 'must not be empty');
    assert.fail('fail returned');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.path, 'general.hosts[0]');
    assert.equal(err.detail, 'must not be empty');
    assert.equal(err.message, 'general.hosts[0]: must not be empty');
  }
});

test('an integer option accepts an integer and rejects a string, naming the path', () => {
  assert.equal(validate(int(), 5222, 'listen.c2s[0].port', ctx()), 5222);
  rejects(() => validate(int(), 'abc', 'listen.c2s[0].port', ctx()), 'listen.c2s[0].port: expected an integer, got the string "abc"');
});

test('an integer option rejects a float', () => {
  rejects(() => validate(int(), 1.5, 'p', ctx()), 'p: expected an integer, got the float 1.5');
  rejects(() => validate(int(), Infinity, 'p', ctx()), 'p: expected an integer, got the float inf');
  rejects(() => validate(int(), NaN, 'p', ctx()), 'p: expected an integer, got the float nan');
});

test('an integer option enforces its bounds', () => {
  const port = int({ min: 1, max: 65535 });
  rejects(() => validate(port, 0, 'p', ctx()), 'p: must be between 1 and 65535, got 0');
  rejects(() => validate(port, 70000, 'p', ctx()), 'p: must be between 1 and 65535, got 70000');
  rejects(() => validate(int({ min: 1 }), -3, 'p', ctx()), 'p: must be at least 1, got -3');
  rejects(() => validate(int({ max: 10 }), 11, 'p', ctx()), 'p: must be at most 10, got 11');
});

test('an integer too large for a JavaScript number arrives as a bigint and is reported, not wrapped', () => {
  rejects(() => validate(int({ min: 1, max: 65535 }), 99999999999999999999n, 'p', ctx()), 'p: must be between 1 and 65535, got 99999999999999999999');
  rejects(() => validate(int(), 99999999999999999999n, 'p', ctx()), 'p: integer 99999999999999999999 is too large');
  assert.equal(validate(int(), 42n, 'p', ctx()), 42);
});

test('a string option checks type, emptiness, allowed values and a custom check', () => {
  assert.equal(validate(str(), 'x', 'p', ctx()), 'x');
  rejects(() => validate(str(), 5, 'p', ctx()), 'p: expected a string, got the integer 5');
  rejects(() => validate(str({ nonEmpty: true }), '', 'p', ctx()), 'p: must not be empty');
  rejects(
    () => validate(str({ oneOf: ['scram', 'plain'] }), 'md5', 'auth.password.format', ctx()),
    'auth.password.format: must be one of "scram", "plain", got "md5"',
  );
  const even = str({ check: (v) => (v.length % 2 === 0 ? undefined : 'must have an even length') });
  assert.equal(validate(even, 'ab', 'p', ctx()), 'ab');
  rejects(() => validate(even, 'abc', 'p', ctx()), 'p: must have an even length');
});

test('a boolean option rejects a string that looks like a boolean', () => {
  assert.equal(validate(bool(), false, 'p', ctx()), false);
  rejects(() => validate(bool(), 'true', 'p', ctx()), 'p: expected a boolean (true or false), got the string "true"');
});

test('a path option resolves a relative path against the config directory, not the working directory', () => {
  assert.equal(validate(path(), 'certs/key.pem', 'p', ctx()), '/etc/petrel/certs/key.pem');
  assert.equal(validate(path(), '/abs/key.pem', 'p', ctx()), '/abs/key.pem');
  rejects(() => validate(path(), 3, 'p', ctx()), 'p: expected a path (a string), got the integer 3');
  rejects(() => validate(path(), '', 'p', ctx()), 'p: must not be empty');
});

test('a path option with exists checks the file at validation time', () => {
  const dir = mkdtempSync(join(tmpdir(), 'petrel-schema-'));
  writeFileSync(join(dir, 'cert.pem'), 'x');
  const c = { configDir: dir, warnings: [] };
  assert.equal(validate(path({ exists: true }), 'cert.pem', 'p', c), join(dir, 'cert.pem'));
  rejects(() => validate(path({ exists: true }), 'nope.pem', 'p', c), `p: file "${join(dir, 'nope.pem')}" does not exist`);
  rejects(() => validate(path({ exists: true }), '.', 'p', c), `p: "${dir}" is not a file`);
});

test('a section rejects an unknown key, naming it', () => {
  const s = section({ hosts: list(str()) });
  rejects(() => validate(s, { hostz: [] }, 'general', ctx()), 'general.hostz: unknown option');
});

test('a section rejects a value that is not a table', () => {
  rejects(() => validate(section({}), [1], 'general', ctx()), 'general: expected a table, got an array');
  rejects(() => validate(section({}), 'x', 'general', ctx()), 'general: expected a table, got the string "x"');
});

test('a section fills in defaults and leaves out optional items without one', () => {
  const s = section({ a: int({ default: 1 }), b: str(), c: path({ default: 'data' }), d: list(int(), { default: [] }) });
  assert.deepEqual(validate(s, {}, 'x', ctx()), { a: 1, c: '/etc/petrel/data', d: [] });
  assert.deepEqual(validate(s, { a: 2, b: 'y' }, 'x', ctx()), { a: 2, b: 'y', c: '/etc/petrel/data', d: [] });
});

test('a section reports a missing required item by its path', () => {
  const s = section({ port: int() }, { required: ['port'] });
  rejects(() => validate(s, {}, 'listen.c2s[0]', ctx()), 'listen.c2s[0].port: missing required option');
});

test('a defaulted section that is absent is validated as an empty table', () => {
  const s = section({ inner: section({ n: int({ default: 7 }) }, { default: true }) });
  assert.deepEqual(validate(s, {}, 'x', ctx()), { inner: { n: 7 } });
  const plain = section({ inner: section({ n: int({ default: 7 }) }) });
  assert.deepEqual(validate(plain, {}, 'x', ctx()), {});
});

test('an absent value with no default is reported as missing', () => {
  rejects(() => validate(int(), undefined, 'x.y', ctx()), 'x.y: missing required option');
});

test('a wildcard validates keys not named in the section', () => {
  const s = section({}, { wildcard: section({ max_rate: int({ min: 1 }) }, { required: ['max_rate'] }) });
  assert.deepEqual(validate(s, { normal: { max_rate: 1000 } }, 'shaper', ctx()), { normal: { max_rate: 1000 } });
  rejects(() => validate(s, { fast: { max_rate: 0 } }, 'shaper', ctx()), 'shaper.fast.max_rate: must be at least 1, got 0');
});

test('a key that is not a bare TOML key is quoted in the path', () => {
  const s = section({});
  rejects(() => validate(s, { 'a.b': 1 }, 'x', ctx()), 'x."a.b": unknown option');
});

test('a section process step transforms the validated value and can report errors', () => {
  const s = section({ a: int(), b: int() }, {
    process: (v: { a: number; b: number }, p: string) => {
      if (v.a > v.b) fail(`${p}.a`, 'must not exceed b');
      return v.a + v.b;
    },
  });
  assert.equal(validate(s, { a: 1, b: 2 }, 'x', ctx()), 3);
  rejects(() => validate(s, { a: 3, b: 2 }, 'x', ctx()), 'x.a: must not exceed b');
});

test('a process step can push warnings into the context', () => {
  const c = ctx();
  validate(section({}, { process: (v, p, cx) => { cx.warnings.push(`${p}: careful`); return v; } }), {}, 'x', c);
  assert.deepEqual(c.warnings, ['x: careful']);
});

test('list items are validated with their index in the path', () => {
  const l = list(section({ port: int() }, { required: ['port'] }));
  rejects(() => validate(l, [{ port: 1 }, { port: 'abc' }], 'listen.c2s', ctx()), 'listen.c2s[1].port: expected an integer, got the string "abc"');
  rejects(() => validate(l, { port: 1 }, 'listen.c2s', ctx()), 'listen.c2s: expected an array, got a table');
});

test('a list can require items and uniqueness', () => {
  rejects(() => validate(list(str(), { nonEmpty: true }), [], 'general.hosts', ctx()), 'general.hosts: must not be empty');
  rejects(() => validate(list(str(), { unique: true }), ['a', 'b', 'a'], 'general.hosts', ctx()), 'general.hosts[2]: duplicate value "a", same as general.hosts[0]');
  rejects(() => validate(list(int(), { unique: true }), [1, 1], 'l', ctx()), 'l[1]: duplicate value 1, same as l[0]');
});

test('a custom spec gets the raw value, the path and the context', () => {
  const either = custom((v, p) => (Array.isArray(v) ? v : isObj(v) ? [v] : fail(p, `expected a table or an array of tables, got ${describe(v)}`)));
  assert.deepEqual(validate(either, { a: 1 }, 'x', ctx()), [{ a: 1 }]);
  rejects(() => validate(either, 3, 'x', ctx()), 'x: expected a table or an array of tables, got the integer 3');
  const withDefault = section({ c: custom(() => 'seen', { default: 'dflt' }) });
  assert.deepEqual(validate(withDefault, {}, 'x', ctx()), { c: 'dflt' });
  assert.deepEqual(validate(withDefault, { c: 1 }, 'x', ctx()), { c: 'seen' });
});

function isObj(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

test('a key named like an Object.prototype property is an unknown option, not a lookup hit', () => {
  rejects(() => validate(section({}), { constructor: 1, toString: 2 }, 'x', ctx()), 'x.constructor: unknown option\nx.toString: unknown option');
});

test('describe names each TOML value type as it reads in the file', () => {
  assert.equal(describe('a'), 'the string "a"');
  assert.equal(describe(2), 'the integer 2');
  assert.equal(describe(2.5), 'the float 2.5');
  assert.equal(describe(true), 'the boolean true');
  assert.equal(describe([]), 'an array');
  assert.equal(describe({}), 'a table');
});

// --- every problem in one run ---------------------------------------------------

test('a section reports every bad key in one error, each with its own path', () => {
  const s = section({ a: int(), b: str(), c: int({ min: 1 }) }, { required: ['a'] });
  assert.throws(() => validate(s, { b: 5, c: 0, d: 1 }, 'x', ctx()), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.deepEqual(err.errors.map((e) => e.message), [
      'x.b: expected a string, got the integer 5',
      'x.c: must be at least 1, got 0',
      'x.d: unknown option',
      'x.a: missing required option',
    ]);
    // The error as a whole: every line, and the first problem's path.
    assert.equal(err.message, err.errors.map((e) => e.message).join('\n'));
    assert.equal(err.path, 'x.b');
    return true;
  });
});

test('every bad item of a list is reported, a nested one included', () => {
  const l = list(section({ port: int() }, { required: ['port'] }));
  assert.throws(() => validate(l, [{ port: 'a' }, { port: 1 }, {}], 'listen.c2s', ctx()), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.deepEqual(err.errors.map((e) => e.message), [
      'listen.c2s[0].port: expected an integer, got the string "a"',
      'listen.c2s[2].port: missing required option',
    ]);
    return true;
  });
});

test('a process step does not run while an item of its section is invalid', () => {
  let ran = false;
  const s = section({ a: int() }, { process: (v) => { ran = true; return v; } });
  assert.throws(() => validate(s, { a: 'x' }, 'x', ctx()), /x\.a: expected an integer/);
  assert.equal(ran, false);
});

test('a single problem is thrown as itself, its errors listing only it', () => {
  assert.throws(() => validate(section({}), { z: 1 }, 'x', ctx()), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.deepEqual(err.errors, [err]);
    return true;
  });
});

test('ErrorCollector keeps what each part throws and throws them together', () => {
  const problems = new ErrorCollector();
  assert.equal(problems.run(() => 1), 1);
  assert.equal(problems.run(() => fail('a', 'bad')), FAILED);
  assert.equal(problems.run(() => validate(section({}), { p: 1, q: 2 }, 'b', ctx())), FAILED);
  assert.throws(() => problems.run(() => { throw new TypeError('not a config problem'); }), TypeError);
  assert.throws(() => problems.throwIfAny(), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.deepEqual(err.errors.map((e) => e.message), ['a: bad', 'b.p: unknown option', 'b.q: unknown option']);
    return true;
  });
  new ErrorCollector().throwIfAny();
});

// --- compatibility options -------------------------------------------------------

test('a compatibility option that is set is validated, kept and reported with its path', () => {
  const s = section({ strategy: compat(str({ oneOf: ['best_worker', 'random_worker'], default: 'best_worker' }), 'requests take the first free connection') });
  const c: ValidateCtx = { configDir: '/etc/petrel', warnings: [], ignored: [] };
  assert.deepEqual(validate(s, { strategy: 'random_worker' }, 'pool', c), { strategy: 'random_worker' });
  assert.deepEqual(c.ignored, [{ path: 'pool.strategy', reason: 'requests take the first free connection' }]);
  assert.deepEqual(c.warnings, []);
  rejects(() => validate(s, { strategy: 'fastest' }, 'pool', ctx()), 'pool.strategy: must be one of "best_worker", "random_worker", got "fastest"');
});

test('a compatibility option left out takes its default without a warning', () => {
  const s = section({ scope: compat(str({ default: 'global' }), 'one pool serves every host') });
  const c: ValidateCtx = { configDir: '/etc/petrel', warnings: [], ignored: [] };
  assert.deepEqual(validate(s, {}, 'pool', c), { scope: 'global' });
  assert.deepEqual(c.ignored, []);
});

test('without a list for them, ignored options are reported among the warnings', () => {
  const c = ctx();
  validate(section({ scope: compat(str(), 'one pool serves every host') }), { scope: 'global' }, 'pool', c);
  assert.deepEqual(c.warnings, ['pool.scope: accepted, no effect in Petrel (one pool serves every host)']);
  assert.equal(ignoredWarning({ path: 'a.b', reason: 'r' }), 'a.b: accepted, no effect in Petrel (r)');
});
