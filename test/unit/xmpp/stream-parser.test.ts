// The stream parser gives its XML parser back whenever a chunk ends between
// stanzas and takes one up again with the next data. These tests check that
// this "resting" changes nothing that is reported: stanzas, limits, errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StreamParser, type StreamParserLimits } from '../../../src/xmpp/stream-parser.ts';
import { serialize } from '../../../src/xmpp/xml.ts';

const HEADER = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";
/** A header short enough for the small size limits below. */
const SHORT = '<stream:stream>';
const LIMITS: StreamParserLimits = { maxStanzaSize: 10_000, maxDepth: 8 };

interface Run {
  events: string[];
  /** Whether the parser held no XML parser after each chunk. */
  resting: boolean[];
}

function run(chunks: readonly (string | Uint8Array)[], limits: StreamParserLimits = LIMITS, rest = true): Run {
  const events: string[] = [];
  const p = new StreamParser(
    {
      onHeader: (h) => events.push(`header ${h.name}`),
      onStanza: (el) => events.push(`stanza ${serialize(el)}`),
      onEnd: () => events.push('end'),
      onError: (condition, text) => events.push(`error ${condition} ${text}`),
    },
    limits,
    { rest },
  );
  const resting: boolean[] = [];
  for (const c of chunks) {
    p.write(typeof c === 'string' ? Buffer.from(c, 'utf8') : c);
    resting.push(p.resting);
  }
  return { events, resting };
}

/**
 * The input cut at every place into two chunks, and into single bytes, is
 * reported the same with resting as without.
 */
function sameAtEveryCut(input: string, limits: StreamParserLimits = LIMITS): void {
  const bytes = Buffer.from(input, 'utf8');
  const cuts: Uint8Array[][] = [[bytes], [...bytes].map((b) => Uint8Array.of(b))];
  for (let i = 1; i < bytes.length; i++) cuts.push([bytes.subarray(0, i), bytes.subarray(i)]);
  for (const chunks of cuts) {
    const got = run(chunks, limits).events;
    assert.deepEqual(got, run(chunks, limits, false).events, `${chunks.length} chunks of ${JSON.stringify(input)}`);
  }
}

test('a parser rests after a chunk that ends between stanzas and parses the next stanza as usual', () => {
  const r = run([HEADER, "<message to='a@b'><body>one</body></message>", "<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>"]);
  assert.deepEqual(r.resting, [true, true, true]);
  assert.deepEqual(r.events, [
    'header stream:stream',
    'stanza <message to="a@b"><body>one</body></message>',
    'stanza <iq type="get" id="1"><query xmlns="jabber:iq:roster"/></iq>',
  ]);
});

test('a parser does not rest inside a stanza, before the stream header or after a failure', () => {
  assert.deepEqual(run(['<stream:stream', ' version="1.0">']).resting, [false, true]);
  assert.deepEqual(run([HEADER, '<message><bo', 'dy/></message>']).resting, [true, false, true]);
  const failed = run([HEADER, '<message></presence>']);
  assert.deepEqual(failed.resting, [true, true]);
  assert.match(failed.events.at(-1)!, /^error not-well-formed/);
});

test('a parser without resting keeps its XML parser between stanzas', () => {
  assert.deepEqual(run([HEADER, '<presence/>'], LIMITS, false).resting, [false, false]);
});

test('a chunk that ends in a carriage return keeps the XML parser until the line end is known', () => {
  const r = run([HEADER, '<presence/>\r', '\n<presence/>']);
  assert.deepEqual(r.resting, [true, false, true]);
  assert.deepEqual(r.events, run([HEADER + '<presence/>\r\n<presence/>'], LIMITS, false).events);
});

test('a chunk boundary right where a stanza starts after resting changes nothing', () => {
  const input = HEADER + "<message id='1'><body>hi</body></message><message id='2'/>  \n<presence/>";
  sameAtEveryCut(input);
});

test('a UTF-8 sequence cut by the chunk boundary while resting is completed by the next chunk', () => {
  const bytes = Buffer.from(HEADER + '<presence/>', 'utf8');
  const next = Buffer.from('<message><body>é🐦</body></message>', 'utf8');
  const at = next.indexOf(0xf0) + 2;
  const r = run([bytes, next.subarray(0, 1), next.subarray(1, at), next.subarray(at)]);
  assert.deepEqual(r.events.at(-1), 'stanza <message><body>é🐦</body></message>');
  sameAtEveryCut(HEADER + '<presence/><message><body>é🐦</body></message>');
});

test('max stanza size is enforced exactly as without resting, whitespace keep-alives included', () => {
  const stanza = "<message to='a@example.com'><body>0123456789</body></message>";
  const input = SHORT + stanza + ' \n ' + stanza + stanza;
  // Around the size of one stanza, so that some limits pass it and some do not.
  for (let max = stanza.length - 2; max <= stanza.length + 4; max++) {
    const limits = { maxStanzaSize: max, maxDepth: 8 };
    sameAtEveryCut(input, limits);
  }
  const tight = { maxStanzaSize: stanza.length - 1, maxDepth: 8 };
  const r = run([SHORT, '<presence/>', stanza], tight);
  assert.equal(r.events.at(-1), 'error policy-violation stanza too large');
});

test('keep-alive whitespace read while resting counts towards the size limit as before', () => {
  const limits = { maxStanzaSize: 16, maxDepth: 8 };
  const spaces = Array.from({ length: 20 }, () => ' ');
  const resting = run([SHORT, '<presence/>', ...spaces], limits);
  assert.deepEqual(resting.events, run([SHORT, '<presence/>', ...spaces], limits, false).events);
  assert.equal(resting.events.at(-1), 'error policy-violation stanza too large');
  // Keep-alives followed by a stanza: the whitespace no longer counts once a tag starts.
  sameAtEveryCut(SHORT + '<presence/>' + ' '.repeat(10) + '<presence a="1"/>', limits);
  sameAtEveryCut(SHORT + '<presence/>' + ' '.repeat(3) + '<presence a="12345"/>', limits);
});

test('element depth and element count limits hold after resting', () => {
  const deep = '<a><b><c><d></d></c></b></a>';
  sameAtEveryCut(HEADER + '<presence/>' + deep, { maxStanzaSize: 0, maxDepth: 3 });
  const r = run([HEADER, '<presence/>', deep], { maxStanzaSize: 0, maxDepth: 3 });
  assert.equal(r.events.at(-1), 'error policy-violation elements nested too deeply');
  const many = run([HEADER, '<presence/>', '<iq><a/><b/><c/></iq>'], { maxStanzaSize: 0, maxDepth: 8, maxElements: 3 });
  assert.equal(many.events.at(-1), 'error policy-violation too many elements in one stanza');
});

test('errors after resting are reported exactly as without resting', () => {
  const cases = [
    '<message></presence>', // mismatched end tag
    '</nothing>', // end tag of no open element
    'text', // text between stanzas
    'a<presence/>',
    '&amp;<presence/>',
    '<!-- comment -->',
    '<?pi data?>',
    "<?xml version='1.0'?>",
    '<!DOCTYPE x>',
    "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>",
    '<message><body>]]></body></message>',
    '<a b="1" b="2"/>',
    '<message><![CDATA[x]]></message>',
    '<message><body>&unknown;</body></message>',
  ];
  for (const c of cases) sameAtEveryCut(HEADER + '<presence/>' + c);
  const bad = run([HEADER, '<presence/>', '<message></presence>']);
  assert.match(bad.events.at(-1)!, /^error not-well-formed/);
  const xmlDecl = run([HEADER, '<presence/>', "<?xml version='1.0'?>"]);
  assert.equal(xmlDecl.events.at(-1), 'error policy-violation unexpected stream header');
  const comment = run([HEADER, '<presence/>', '<!-- x -->']);
  assert.equal(comment.events.at(-1), 'error restricted-xml comments are not allowed in XMPP');
});

test('invalid UTF-8 after resting fails the stream as before', () => {
  const head = Buffer.from(HEADER + '<presence/>', 'utf8');
  const tail = Buffer.concat([Buffer.from('<message>ok', 'utf8'), Buffer.from([0xff]), Buffer.from('</message>')]);
  const r = run([head, tail]);
  assert.deepEqual(r.events, run([Buffer.concat([head, tail])], LIMITS, false).events);
  assert.equal(r.events.at(-1), 'error not-well-formed invalid UTF-8');
});

test('the stream end after resting closes the stream, and so does an end tag that closes a stanza and the stream', () => {
  const r = run([HEADER, '<presence/>', '</stream:stream>']);
  assert.deepEqual(r.events, ['header stream:stream', 'stanza <presence/>', 'end']);
  sameAtEveryCut(HEADER + '<presence/></stream:stream>');
  sameAtEveryCut(HEADER + '<presence/><message></stream:stream>');
});

test('a stream whose root is not stream:stream is resumed with its own root name', () => {
  const input = "<root xmlns='jabber:client'><presence/><message/></root>";
  sameAtEveryCut(input);
  const r = run(['<root>', '<presence/>', '</root>']);
  assert.deepEqual(r.events, ['header root', 'stanza <presence/>', 'end']);
  const wrongEnd = run(['<root>', '<presence/>', '</stream:stream>']);
  assert.match(wrongEnd.events.at(-1)!, /^error not-well-formed/);
});

test('many idle streams rest at once and each resumes correctly', () => {
  const parsers: { p: StreamParser; got: string[] }[] = [];
  for (let i = 0; i < 200; i++) {
    const got: string[] = [];
    const p = new StreamParser(
      { onHeader: () => {}, onStanza: (el) => got.push(serialize(el)), onEnd: () => got.push('end'), onError: (c) => got.push(`error ${c}`) },
      LIMITS,
    );
    p.write(Buffer.from(HEADER + `<presence id='${i}'/>`));
    parsers.push({ p, got });
  }
  assert.ok(parsers.every(({ p }) => p.resting));
  // Interleaved: each stanza is cut in two, so several streams hold a parser at the same time.
  for (const [i, { p }] of parsers.entries()) p.write(Buffer.from(`<message id='${i}'><bo`));
  for (const [i, { p }] of parsers.entries()) p.write(Buffer.from(`dy>${i}</body></message>`));
  for (const [i, { p, got }] of parsers.entries()) {
    assert.ok(p.resting);
    assert.deepEqual(got, [`<presence id="${i}"/>`, `<message id="${i}"><body>${i}</body></message>`]);
  }
});

test('a stream that starts after others rested gets a parser at the start of a document', () => {
  // The first stream rests, giving its parser to the pool; the second takes it for its header.
  run([HEADER, '<presence/>']);
  const r = run(["<?xml version='1.0'?>", HEADER.slice("<?xml version='1.0'?>".length), '<presence/>']);
  assert.deepEqual(r.events, ['header stream:stream', 'stanza <presence/>']);
  const r2 = run([HEADER, '<presence/>']);
  assert.deepEqual(r2.events, ['header stream:stream', 'stanza <presence/>']);
  const dtd = run(['<!DOCTYPE x>']);
  assert.equal(dtd.events.at(-1), 'error restricted-xml a DTD is not allowed in XMPP');
});

test('a stanza handler that feeds another parser does not disturb the resting parsers', () => {
  const inner: string[] = [];
  const other = new StreamParser(
    { onHeader: () => {}, onStanza: (el) => inner.push(serialize(el)), onEnd: () => {}, onError: (c) => inner.push(`error ${c}`) },
    LIMITS,
  );
  other.write(Buffer.from(HEADER));
  const outer: string[] = [];
  const p = new StreamParser(
    {
      onHeader: () => {},
      onStanza: (el) => {
        outer.push(serialize(el));
        other.write(Buffer.from(`<iq id='${outer.length}'/>`));
      },
      onEnd: () => {},
      onError: (c) => outer.push(`error ${c}`),
    },
    LIMITS,
  );
  p.write(Buffer.from(HEADER + '<presence/><message/>'));
  assert.deepEqual(outer, ['<presence/>', '<message/>']);
  assert.deepEqual(inner, ['<iq id="1"/>', '<iq id="2"/>']);
  assert.ok(p.resting && other.resting);
});

test('at the end of a chunk only the part of the open stanza read so far counts towards the size limit', () => {
  const first = "<message id='1'><body>0123456789012345678901234567890123</body></message>";
  const limits = { maxStanzaSize: first.length + 10, maxDepth: 8 };
  // A whole stanza and the start of the next in one chunk: the open part is far below the limit.
  const r = run([SHORT, first + "<message id='2'><bo", 'dy/></message>'], limits);
  assert.deepEqual(r.events, ['header stream:stream', `stanza ${first.replace(/'/g, '"')}`, 'stanza <message id="2"><body/></message>']);
  // An open stanza past the limit is still stopped at the end of the chunk that takes it past.
  const big = run([SHORT, '<message><body>' + 'x'.repeat(limits.maxStanzaSize)], limits);
  assert.equal(big.events.at(-1), 'error policy-violation stanza too large');
});
