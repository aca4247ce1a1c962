// The webhook the pushed messages go to: an HTTP server in its own process
// that answers every POST at once, counts them, and (while recording) notes
// when each marked message arrived. Driven by its parent over IPC.
//
// Two implementations (argument `raw` or `node`):
// - raw (the default): net sockets and the request reader of
//   http-responder.ts. Every request is read in full before it is counted;
//   the answers to the requests that arrived together go out in one write.
//   It costs the shared CPU far less than node:http per request, so the sink
//   is not what bounds the pushes measured.
// - node: node:http's server, for comparison.
import { createServer } from 'node:http';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { MARK_RE, now } from './common.ts';
import { BadRequest, RequestReader } from './http-responder.ts';

type Command = { cmd: 'stats' } | { cmd: 'record'; on: boolean } | { cmd: 'arrivals' } | { cmd: 'reset' } | { cmd: 'exit' };

const kind = process.argv[2] ?? 'raw';
if (kind !== 'raw' && kind !== 'node') throw new Error(`sink: unknown implementation ${kind} (raw or node)`);

let count = 0;
let unmarked = 0;
let bad = 0;
let recording = false;
let seqs: number[] = [];
let times: number[] = [];

/** Counts one complete request and, while recording, notes when its marked message arrived. */
function take(body: string, t: number): void {
  count++;
  MARK_RE.lastIndex = 0;
  const m = MARK_RE.exec(body);
  if (m === null) unmarked++;
  else if (recording) {
    seqs.push(Number(m[2]));
    times.push(t);
  }
}

let server: Server;
if (kind === 'node') {
  const s = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      body += c;
    });
    req.on('end', () => {
      take(body, now());
      res.writeHead(204);
      res.end();
    });
  });
  s.keepAliveTimeout = 60_000;
  server = s;
} else {
  const NO_CONTENT = 'HTTP/1.1 204 No Content\r\n\r\n';
  const CLOSE = 'HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n';
  const BAD = 'HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n';
  const answers: Buffer[] = [Buffer.alloc(0)];
  /** n answers of 204, built once per n. */
  const answer = (n: number): Buffer => (answers[n] ??= Buffer.from(NO_CONTENT.repeat(n), 'latin1'));
  server = createNetServer({ noDelay: true }, (sock: Socket) => {
    const reader = new RequestReader();
    sock.on('data', (chunk: Buffer) => {
      const t = now();
      let reqs;
      try {
        reqs = reader.push(chunk);
      } catch (err) {
        if (!(err instanceof BadRequest)) throw err;
        bad++;
        sock.end(BAD);
        return;
      }
      if (reqs.length === 0) return;
      let closing = false;
      for (const r of reqs) {
        take(r.body.toString('latin1'), t);
        if (r.close) closing = true;
      }
      if (closing) sock.end(answer(reqs.length - 1).toString('latin1') + CLOSE, 'latin1');
      else sock.write(answer(reqs.length));
    });
    sock.on('error', () => sock.destroy());
  });
}

server.listen(0, '127.0.0.1', () => {
  const addr = server.address();
  process.send!({ ready: true, port: typeof addr === 'object' && addr !== null ? addr.port : 0, kind });
});

process.on('message', (m: Command) => {
  switch (m.cmd) {
    case 'stats':
      process.send!({ count, unmarked, bad, t: now() });
      break;
    case 'record':
      recording = m.on;
      break;
    case 'arrivals':
      process.send!({ seqs, times });
      break;
    case 'reset':
      count = 0;
      unmarked = 0;
      bad = 0;
      seqs = [];
      times = [];
      process.send!({ ok: true });
      break;
    case 'exit':
      server.close();
      process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0));
