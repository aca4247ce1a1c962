import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../../../src/config/schema.ts';
import { loadCallbackModule } from '../../../../src/modules/mod_event_pusher/http/loader.ts';
import { defaults } from '../../../../src/modules/mod_event_pusher/http/defaults.ts';

const dir = mkdtempSync(join(tmpdir(), 'petrel-cb-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const full = `
export function shouldMakeReq() { return true; }
export function prepareHeaders() { return { 'content-type': 'text/plain' }; }
export function prepareBody(a) { return 'from ' + a.sender; }
`;
writeFileSync(join(dir, 'mod_event_pusher_http_notifications.ts'), `
import type { CallbackModule, PrepareArgs, ShouldMakeReqArgs } from 'petrel';
export function shouldMakeReq(a: ShouldMakeReqArgs): boolean { return a.dir === 'in'; }
export function prepareHeaders(_a: PrepareArgs): Array<[string, string]> { return [['content-type', 'text/plain']]; }
export function prepareBody(a: PrepareArgs): string { return 'ts ' + a.sender; }
const _check: CallbackModule = { shouldMakeReq, prepareHeaders, prepareBody };
void _check;
`);
mkdirSync(join(dir, 'hooks'));
writeFileSync(join(dir, 'hooks', 'alerts.mjs'), full);
writeFileSync(join(dir, 'as-default.js'), `export default { shouldMakeReq() { return false; }, prepareHeaders() { return []; }, prepareBody() { return this.tag; }, tag: 'bound' };`);
writeFileSync(join(dir, 'partial.mjs'), `export function shouldMakeReq() { return true; }\nexport function prepareHeaders() { return []; }\n`);
writeFileSync(join(dir, 'broken.mjs'), `export function shouldMakeReq( {`);
const pkg = join(dir, 'node_modules', 'petrel-callback-pkg');
mkdirSync(pkg, { recursive: true });
writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'petrel-callback-pkg', type: 'module', exports: { '.': { import: './main.js' } } }));
writeFileSync(join(pkg, 'main.js'), full);

const P = 'modules.mod_event_pusher.backend.http[1].callback_module';
const args = { sender: 'alice' } as any;

function rejectsAt(name: string, re: RegExp) {
  return assert.rejects(loadCallbackModule(name, dir, P), (e: unknown) => {
    assert.ok(e instanceof ConfigError, String(e));
    assert.equal(e.path, P);
    assert.match(e.message, re);
    return true;
  });
}

test('the built-in default module is found by its MongooseIM name', async () => {
  assert.equal(await loadCallbackModule('mod_event_pusher_http_defaults', dir, P), defaults);
});

test('a bare name loads the TypeScript file of that name in the config directory', async () => {
  const m = await loadCallbackModule('mod_event_pusher_http_notifications', dir, P);
  assert.equal(m.prepareBody(args), 'ts alice');
});

test('a relative path loads a file relative to the config directory, extension optional', async () => {
  assert.equal((await loadCallbackModule('./hooks/alerts.mjs', dir, P)).prepareBody(args), 'from alice');
  assert.equal((await loadCallbackModule('hooks/alerts', dir, P)).prepareBody(args), 'from alice');
});

test('functions on a default export are used, bound to it', async () => {
  assert.equal((await loadCallbackModule('./as-default.js', dir, P)).prepareBody(args), 'bound');
});

test('an installed package that only exports for import is found from the config directory', async () => {
  assert.equal((await loadCallbackModule('petrel-callback-pkg', dir, P)).prepareBody(args), 'from alice');
});

test('a module lacking a function is an error naming the path and the function', async () => {
  await rejectsAt('./partial.mjs', /does not export prepareBody/);
});

test('a module that does not exist is an error naming the path', async () => {
  await rejectsAt('mod_event_pusher_http_nothing', /not found/);
  await rejectsAt('./nothing.ts', /not found/);
});

test('a module that fails to load is an error naming the path', async () => {
  await rejectsAt('./broken.mjs', /cannot be loaded/);
});
