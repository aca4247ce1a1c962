// Fuzzing the XMPP stream parser (src/xmpp/stream-parser.ts): whatever
// bytes arrive, write() never throws, a failure is reported once through
// onError with an RFC 6120 condition and nothing follows it, cutting the
// input into other chunks changes nothing, resting between stanzas (giving
// the XML parser back when a chunk ends there) changes nothing, every stanza
// it hands on survives serialisation and parsing again, and each input takes
// < 100 ms.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StreamParser, type StreamParserLimits } from '../../src/xmpp/stream-parser.ts';
import { serialize } from '../../src/xmpp/xml.ts';
import { MAX_MS, chunked, corpus, fc, mutated, params, timeSync } from './lib.ts';

const CONDITIONS = new Set(['not-well-formed', 'restricted-xml', 'policy-violation', 'unsupported-encoding']);
const SEEDS = corpus('stanzas');
const HEADER = SEEDS.find((_, i) => i === SEEDS.length - 1)!; // sorted: stream-header.xml comes last
const STANZAS = SEEDS.filter((s) => s !== HEADER);
const NO_LIMITS: StreamParserLimits = { maxStanzaSize: 0, maxDepth: 64 };
const LIMITS: StreamParserLimits = { maxStanzaSize: 2048, maxDepth: 16, maxElements: 12 };

/** What the parser reported, in order, as comparable strings. */
function run(chunks: readonly Uint8Array[], limits: StreamParserLimits, rest = true): string[] {
  const events: string[] = [];
  const p = new StreamParser(
    {
      onHeader: (h) => events.push(`header ${h.name} ${JSON.stringify(h.attrs)}`),
      onStanza: (el) => events.push(`stanza ${serialize(el)}`),
      onEnd: () => events.push('end'),
      onError: (condition, text) => {
        assert.equal(typeof text, 'string');
        events.push(`error ${condition}`);
      },
    },
    limits,
    { rest },
  );
  let failedAt = -1;
  chunks.forEach((c, i) => {
    const ok = p.write(c);
    if (!ok && failedAt < 0) failedAt = i;
    if (failedAt >= 0) assert.equal(ok, false, 'write() keeps returning false once the stream has failed');
  });
  assert.equal(p.failed, failedAt >= 0);
  return events;
}

/** The invariants every event sequence keeps. */
function checkEvents(events: string[]): void {
  const errors = events.filter((e) => e.startsWith('error '));
  assert.ok(errors.length <= 1, `more than one error: ${errors.join(', ')}`);
  if (errors.length === 1) {
    assert.equal(events.at(-1), errors[0], 'nothing is reported after an error');
    assert.ok(CONDITIONS.has(errors[0]!.slice(6)), `unexpected condition ${errors[0]}`);
  }
  const firstOther = events.findIndex((e) => !e.startsWith('error '));
  if (firstOther >= 0) assert.match(events[firstOther]!, /^header /, 'the header comes before anything else');
  assert.ok(events.filter((e) => e.startsWith('header ')).length <= 1, 'one header per parser');
}

/** Every stanza handed on, serialised and parsed again after a header, comes out the same. */
function checkRoundTrip(events: string[]): void {
  for (const e of events) {
    if (!e.startsWith('stanza ')) continue;
    const xml = e.slice(7);
    const again = run([HEADER, Buffer.from(xml, 'utf8')], NO_LIMITS);
    assert.deepEqual(again.slice(1), [e], `round trip of ${xml}`);
  }
}

function property(input: fc.Arbitrary<Buffer[]>, limits: StreamParserLimits, extra?: (chunks: Buffer[], events: string[]) => void) {
  return fc.property(input, (chunks) => {
    let events: string[] = [];
    const ms = timeSync(() => {
      events = run(chunks, limits);
    });
    assert.ok(ms < MAX_MS, `${ms.toFixed(1)} ms for ${Buffer.concat(chunks).length} bytes`);
    checkEvents(events);
    extra?.(chunks, events);
  });
}

const afterHeader = (body: fc.Arbitrary<Buffer>) => body.map((b) => Buffer.concat([HEADER, b]));

test('arbitrary bytes never make the parser throw, and each failure is one onError', () => {
  fc.assert(property(chunked(fc.uint8Array({ maxLength: 512 }).map((u) => Buffer.from(u))), LIMITS), params(400));
});

test('arbitrary bytes after a valid stream header are handled the same way', () => {
  fc.assert(property(chunked(afterHeader(fc.uint8Array({ maxLength: 512 }).map((u) => Buffer.from(u)))), LIMITS), params(400));
});

test('mutated real stanzas are handled, and every stanza accepted survives a round trip', () => {
  const stream = fc.array(fc.oneof(fc.constantFrom(...STANZAS), mutated(STANZAS)), { minLength: 1, maxLength: 4 }).map((parts) => Buffer.concat([HEADER, ...parts]));
  fc.assert(property(chunked(stream), NO_LIMITS, (_c, events) => checkRoundTrip(events)), params(600));
});

test('a mutated stream header is handled', () => {
  fc.assert(property(chunked(mutated([HEADER], 4).map((h) => Buffer.concat([h, STANZAS[0]!]))), LIMITS), params(300));
});

test('how the bytes are cut into chunks does not change what is reported', () => {
  const stream = fc.array(fc.oneof(fc.constantFrom(...STANZAS), mutated(STANZAS, 3)), { minLength: 1, maxLength: 3 }).map((parts) => Buffer.concat([HEADER, ...parts]));
  fc.assert(
    fc.property(chunked(stream), (chunks) => {
      const whole = run([Buffer.concat(chunks)], NO_LIMITS);
      const pieces = run(chunks, NO_LIMITS);
      assert.deepEqual(pieces, whole);
    }),
    params(400),
  );
});

// Structured input: element trees with names, attributes and text drawn
// from troublesome characters, serialised with or without escaping.
const nameArb = fc.oneof(fc.constantFrom('message', 'body', 'a', 'x:y', 'stream:stream', 'iq', '_', 'é'), fc.string({ minLength: 1, maxLength: 6, unit: 'binary-ascii' }));
const textArb = fc.string({ maxLength: 24, unit: fc.constantFrom('a', ' ', '<', '>', '&', '"', "'", '\n', '\r', '\t', '\u0000', 'é', '\uD800', '🐦', ']]>') });
const escape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const { tree } = fc.letrec<{ tree: string }>((tie) => ({
  tree: fc
    .tuple(nameArb, fc.dictionary(nameArb, textArb, { maxKeys: 3 }), fc.array(fc.oneof({ depthSize: 'small' }, textArb.map(escape), textArb, tie('tree')), { maxLength: 4 }), fc.boolean())
    .map(([name, attrs, kids, escaped]) => {
      const a = Object.entries(attrs).map(([k, v]) => ` ${k}="${escaped ? escape(v) : v}"`).join('');
      return kids.length === 0 ? `<${name}${a}/>` : `<${name}${a}>${kids.join('')}</${name}>`;
    }),
}));

test('generated element trees are parsed or refused cleanly, and accepted ones survive a round trip', () => {
  const stream = fc.array(tree, { minLength: 1, maxLength: 3 }).map((ts) => Buffer.concat([HEADER, Buffer.from(ts.join(''), 'utf8')]));
  fc.assert(property(chunked(stream), NO_LIMITS, (_c, events) => checkRoundTrip(events)), params(500));
});

test('size, depth and element limits end the stream with policy-violation and nothing else', () => {
  const big = fc.tuple(fc.integer({ min: 1, max: 200 }), fc.constantFrom('<a>', '<a/>', 'xx', '<a x="1">')).map(([n, piece]) => Buffer.from(`<message>${piece.repeat(n * 20)}`));
  fc.assert(
    property(chunked(afterHeader(big)), LIMITS, (chunks, events) => {
      const bytes = Buffer.concat(chunks).length - HEADER.length;
      if (bytes > LIMITS.maxStanzaSize + 64) assert.equal(events.at(-1), 'error policy-violation');
      assert.ok(!events.some((e) => e.startsWith('stanza ')), 'an unfinished stanza is never handed on');
    }),
    params(200),
  );
});

test('resting between stanzas, wherever the chunks end, never changes what is reported', () => {
  // Keep-alive whitespace between stanzas, since it is what a resting parser has to account for.
  const space = fc.constantFrom(' ', '\n', '\r\n', '\r', ' \t ', '   ').map((w) => Buffer.from(w));
  const part = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...STANZAS) }, { weight: 2, arbitrary: space }, { weight: 1, arbitrary: mutated(STANZAS, 2) });
  const limits: fc.Arbitrary<StreamParserLimits> = fc.record({
    maxStanzaSize: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 400 })),
    maxDepth: fc.integer({ min: 1, max: 6 }),
    maxElements: fc.integer({ min: 0, max: 12 }),
  });
  // Chunks end at some of the places where one part meets the next (where resting happens), and at random places.
  const chunks = fc.tuple(fc.array(part, { minLength: 1, maxLength: 8 }), fc.array(fc.boolean(), { minLength: 9, maxLength: 9 }), fc.array(fc.nat(), { maxLength: 4 })).map(([parts, atPart, extra]) => {
    const all = [HEADER, ...parts];
    const whole = Buffer.concat(all);
    const points = new Set<number>();
    let at = 0;
    all.forEach((p, i) => {
      at += p.length;
      if (atPart[i] === true) points.add(at);
    });
    for (const e of extra) points.add(e % (whole.length + 1));
    const out: Buffer[] = [];
    let last = 0;
    for (const p of [...points].sort((a, b) => a - b)) {
      if (p > last) out.push(whole.subarray(last, p));
      last = Math.max(last, p);
    }
    out.push(whole.subarray(last));
    return out;
  });
  fc.assert(
    fc.property(chunks, limits, (cs, l) => {
      const resting = run(cs, l);
      checkEvents(resting);
      assert.deepEqual(resting, run(cs, l, false));
    }),
    params(500),
  );
});
