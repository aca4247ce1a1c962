// The options of mod_stream_management, mod_carboncopy and mod_csi: their
// MongooseIM names and defaults, and errors that name the TOML path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { definition as sm, hDistance, hNext } from '../../../src/modules/mod_stream_management.ts';
import { definition as carbons, eligible } from '../../../src/modules/mod_carboncopy.ts';
import { definition as csi } from '../../../src/modules/mod_csi.ts';
import { validate } from '../../../src/config/schema.ts';
import { parseElement } from '../../../src/xmpp/parse-element.ts';

const vctx = () => ({ configDir: '/', warnings: [] as string[] });

test('mod_stream_management has MongooseIM defaults and takes "infinity" for buffer_max', () => {
  assert.deepEqual(validate(sm.configSpec, {}, 'modules.mod_stream_management', vctx()), {
    buffer: true,
    buffer_max: 100,
    buffer_max_bytes: 1_048_576,
    max_resumable_bytes: 268_435_456,
    ack: true,
    ack_freq: 1,
    resume_timeout: 600,
    stale_h: { enabled: false, repeat_after: 1800, geriatric: 3600 },
    max_resumable_sessions: 10_000,
  });
  const o = validate(sm.configSpec, { buffer_max: 'infinity', stale_h: { enabled: true, geriatric: 60 } }, 'modules.mod_stream_management', vctx());
  assert.equal(o.buffer_max, 0);
  assert.deepEqual(o.stale_h, { enabled: true, repeat_after: 1800, geriatric: 60 });
});

test('mod_stream_management refuses bad values and unknown keys, naming the option', () => {
  const p = 'modules.mod_stream_management';
  assert.throws(() => validate(sm.configSpec, { buffer_max: 'lots' }, p, vctx()), /modules\.mod_stream_management\.buffer_max: expected an integer of at least 1 or "infinity"/);
  assert.throws(() => validate(sm.configSpec, { ack_freq: 0 }, p, vctx()), /modules\.mod_stream_management\.ack_freq/);
  assert.throws(() => validate(sm.configSpec, { resume_timeout: -1 }, p, vctx()), /modules\.mod_stream_management\.resume_timeout/);
  assert.throws(() => validate(sm.configSpec, { stale_h: { geriatrics: 1 } }, p, vctx()), /modules\.mod_stream_management\.stale_h\.geriatrics: unknown option/);
});

test('mod_csi keeps 20 by default, takes 0 and "infinity", and refuses a negative buffer_max', () => {
  const p = 'modules.mod_csi';
  assert.deepEqual(validate(csi.configSpec, {}, p, vctx()), { buffer_max: 20 });
  assert.deepEqual(validate(csi.configSpec, { buffer_max: 0 }, p, vctx()), { buffer_max: 0 });
  assert.deepEqual(validate(csi.configSpec, { buffer_max: 'infinity' }, p, vctx()), { buffer_max: Number.MAX_SAFE_INTEGER });
  assert.throws(() => validate(csi.configSpec, { buffer_max: -1 }, p, vctx()), /modules\.mod_csi\.buffer_max/);
});

test('mod_carboncopy accepts MongooseIM iqdisc.type and nothing else', () => {
  const p = 'modules.mod_carboncopy';
  assert.deepEqual(validate(carbons.configSpec, {}, p, vctx()), { iqdisc: { type: 'no_queue' } });
  assert.deepEqual(validate(carbons.configSpec, { iqdisc: { type: 'parallel' } }, p, vctx()), { iqdisc: { type: 'parallel' } });
  assert.throws(() => validate(carbons.configSpec, { iqdisc: { type: 'sometimes' } }, p, vctx()), /modules\.mod_carboncopy\.iqdisc\.type/);
  assert.throws(() => validate(carbons.configSpec, { copies: 2 }, p, vctx()), /modules\.mod_carboncopy\.copies: unknown option/);
});

test('carbons are made of chat messages and normal ones with a body, never of private, no-copy, group chat or carbon messages', () => {
  const m = (s: string) => eligible(parseElement(s));
  assert.equal(m("<message type='chat'><body>hi</body></message>"), true);
  assert.equal(m("<message type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>"), true);
  assert.equal(m("<message><body>hi</body></message>"), true);
  assert.equal(m("<message type='normal'><subject>s</subject></message>"), false);
  assert.equal(m("<message type='normal'><received xmlns='urn:xmpp:receipts' id='x'/></message>"), true);
  assert.equal(m("<message type='groupchat'><body>hi</body></message>"), false);
  assert.equal(m("<message type='headline'><body>hi</body></message>"), false);
  assert.equal(m("<message type='error'><body>hi</body></message>"), false);
  assert.equal(m("<message type='chat'><body>hi</body><private xmlns='urn:xmpp:carbons:2'/></message>"), false);
  assert.equal(m("<message type='chat'><body>hi</body><no-copy xmlns='urn:xmpp:hints'/></message>"), false);
  assert.equal(m("<message type='chat'><body>hi</body><x xmlns='http://jabber.org/protocol/muc#user'/></message>"), false);
  assert.equal(m("<message type='chat'><sent xmlns='urn:xmpp:carbons:2'/></message>"), false);
});

test('stream management counts wrap at 2^32 and the distance between two counts stays right across the wrap', () => {
  assert.equal(hNext(0), 1);
  assert.equal(hNext(2 ** 32 - 1), 0);
  assert.equal(hDistance(2 ** 32 - 2, 1), 3);
  assert.equal(hDistance(5, 5), 0);
  assert.equal(hDistance(1, 2 ** 32 - 1), 2 ** 32 - 2);
});
