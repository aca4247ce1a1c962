// A promise rejected where nobody handles it is a bug, but not one that may
// take every user's connection down: Node would exit on it, the server logs
// it (unhandled_rejection) and goes on serving. The rejection is made inside
// the real server process, loaded before it starts.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { preparePetrel, testEnv, type Petrel } from '../helpers/server.ts';
import { stillServes } from './setup.ts';

const REJECT_LATER = "setTimeout(() => { Promise.reject(new Error('a rejection nobody handles')); }, 2000).unref();";

let server: Petrel;
before(async () => {
  server = await preparePetrel({ users: [['alice', 'pw-alice-ur']] });
  await server.start({ env: testEnv({ NODE_OPTIONS: `--import=data:text/javascript,${encodeURIComponent(REJECT_LATER)}` }) });
});
after(async () => {
  await server.dispose();
});

test('an unhandled promise rejection in the server is logged and the server goes on serving', { timeout: 30_000 }, async () => {
  const line = await server.waitForLog((l) => l.what === 'unhandled_rejection', 20_000);
  assert.match(String(line.err), /a rejection nobody handles/);
  assert.equal(server.running, true);
  await stillServes(server, 'alice', 'pw-alice-ur');
});
