import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AccessRules, accessSpec, aclSpec, numericValue } from '../../../src/config/access.ts';
import { validate, ConfigError } from '../../../src/config/schema.ts';
import { loadConfig } from '../../../src/cli/config.ts';

const ctx = { configDir: '/', warnings: [] };
const acl = (v: unknown) => validate(aclSpec, v, 'acl', ctx);
const access = (v: unknown) => validate(accessSpec, v, 'access', ctx);
const who = (local: string, domain = 'localhost', resource = '') => ({ local, domain, resource });

test('an empty pattern matches the users of the current domain only, as MongooseIM\'s {} does', () => {
  const r = new AccessRules(acl({ local: [{}] }), access({ r: [{ acl: 'local', value: 'allow' }] }), ['localhost', 'other']);
  assert.equal(r.match('r', who('alice')), 'allow');
  assert.equal(r.match('r', who('alice', 'elsewhere'), 'deny', 'localhost'), 'deny');
});

test('user, server, resource and their regexp and glob forms must all hold; patterns of a class are alternatives', () => {
  const classes = acl({
    admin: [{ user: 'Alice', server: 'localhost' }, { user: 'carol' }],
    mobile: [{ resource: 'mobile', match: 'all' }],
    ae: [{ user_regexp: '^a.*e' }],
    glob: [{ user_glob: 'bo?', server_glob: 'local*' }],
    never: [{ match: 'none' }],
  });
  const r = new AccessRules(classes, {}, ['localhost']);
  assert.ok(r.inClass('admin', who('alice')));
  assert.ok(r.inClass('admin', who('carol')));
  assert.ok(!r.inClass('admin', who('bob')));
  assert.ok(r.inClass('mobile', who('x', 'far.example', 'mobile')));
  assert.ok(!r.inClass('mobile', who('x', 'far.example', 'home')));
  assert.ok(r.inClass('ae', who('albert')));
  assert.ok(!r.inClass('ae', who('bob')));
  assert.ok(r.inClass('glob', who('bob')));
  assert.ok(!r.inClass('glob', who('bobby')));
  assert.ok(!r.inClass('never', who('alice')));
  assert.ok(r.inClass('all', who('anyone')));
  assert.ok(!r.inClass('undefined-class', who('alice')));
});

test('the first matching clause gives the value; no match, or no rule, gives deny; all and none are built in', () => {
  const r = new AccessRules(acl({ admin: [{ user: 'boss' }] }), access({
    max: [{ acl: 'admin', value: 5000 }, { acl: 'all', value: 100 }],
    c2s: [{ acl: 'blocked', value: 'deny' }, { acl: 'admin', value: 'allow' }],
  }), ['localhost']);
  assert.equal(r.match('max', who('boss')), 5000);
  assert.equal(r.match('max', who('alice')), 100);
  assert.equal(r.match('c2s', who('alice')), 'deny');
  assert.equal(r.match('missing', who('alice')), 'deny');
  assert.equal(r.match('all', who('alice')), 'allow');
  assert.equal(r.match('none', who('boss')), 'deny');
  assert.equal(numericValue('deny', 10), 10);
  assert.equal(numericValue('infinity', 10), 0);
  assert.equal(numericValue(7, 10), 7);
});

test('bad classes and clauses are errors naming their TOML path', () => {
  assert.throws(() => acl({ a: [{ usr: 'x' }] }), /acl\.a\[0\]\.usr: unknown option/);
  assert.throws(() => acl({ a: [{ user_regexp: '(' }] }), /acl\.a\[0\]\.user_regexp: not a regular expression/);
  assert.throws(() => acl({ a: [{ match: 'some' }] }), /acl\.a\[0\]\.match: must be one of/);
  assert.throws(() => acl({ all: [{}] }), /acl\.all: "all" is built in/);
  assert.throws(() => access({ r: [{ acl: 'all' }] }), /access\.r\[0\]\.value: missing required option/);
  assert.throws(() => access({ r: [{ acl: 'all', value: 1.5 }] }), /access\.r\[0\]\.value: expected a string or an integer/);
  assert.throws(() => access({ r: { acl: 'all', value: 'allow' } }), /access\.r: expected an array of clauses/);
});

function loadText(text: string) {
  const dir = mkdtempSync(join(tmpdir(), 'petrel-access-unit-'));
  const file = join(dir, 'petrel.toml');
  writeFileSync(file, text);
  return loadConfig(file);
}

const BASE = '[general]\nhosts = ["localhost"]\n[[listen.c2s]]\nport = 5222\nip_address = "127.0.0.1"\n';

test('a rule Petrel cannot enforce is an error naming it', () => {
  const problems = (text: string): string[] => {
    try {
      loadText(text);
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.errors.map((e) => e.message);
    }
    return assert.fail('loaded');
  };
  assert.deepEqual(problems(BASE.replace('port = 5222', 'port = 5222\naccess = "c2s"')), [
    'listen.c2s[0].access: no access rule "c2s"; define it in [access] or use "all"',
  ]);
  assert.deepEqual(problems(BASE.replace('port = 5222', 'port = 5222\naccess = "c2s"') + '[access]\nc2s = [{acl = "all", value = 5}]\n'), [
    'access.c2s[0].value: 5 cannot be enforced here: listen.c2s[0].access needs "allow" or "deny"',
  ]);
  assert.deepEqual(problems(BASE + '[access]\nmax_user_sessions = [{acl = "all", value = "lots"}]\n'), [
    'access.max_user_sessions[0].value: "lots" cannot be enforced here: max_user_sessions needs a positive integer or "infinity"',
  ]);
  assert.deepEqual(problems(BASE + '[modules.mod_offline]\naccess_max_user_messages = "offline"\n[access]\noffline = [{acl = "all", value = "allow"}]\n'), [
    'access.offline[0].value: "allow" cannot be enforced here: modules.mod_offline.access_max_user_messages needs a positive integer or "infinity"',
  ]);
  assert.deepEqual(problems(BASE.replace('port = 5222', 'port = 5222\nshaper = "c2s_shaper"') + '[access]\nc2s_shaper = [{acl = "all", value = "turbo"}]\n'), [
    'access.c2s_shaper[0].value: "turbo" cannot be enforced here: listen.c2s[0].shaper needs the name of a [shaper.NAME] or "none"',
  ]);
  assert.deepEqual(problems('modules.mod_vcard = 1\n' + BASE), ['modules.mod_vcard: expected a table, got the integer 1']);
  assert.match(problems(BASE + '[modules.mod_domain_isolation]\n')[0]!, /^modules\.mod_domain_isolation: not implemented, and refused because it stops messages between domains/);
});

test('a shaper access rule naming defined shapers is accepted', () => {
  const c = loadText(BASE.replace('port = 5222', 'port = 5222\nshaper = "c2s_shaper"') +
    '[shaper.normal]\nmax_rate = 1000\n[acl]\nadmin = [{user = "boss"}]\n[access]\nc2s_shaper = [{acl = "admin", value = "none"}, {acl = "all", value = "normal"}]\n');
  assert.equal(c.listen.c2s[0].shaper, 'c2s_shaper');
});
