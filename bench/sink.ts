// The webhook the pushed messages go to: an HTTP server in its own process
// that answers every POST at once, counts them, and (while recording) notes
// when each marked message arrived. Driven by its parent over IPC.
import { createServer } from 'node:http';
import { MARK_RE, now } from './common.ts';

type Command = { cmd: 'stats' } | { cmd: 'record'; on: boolean } | { cmd: 'arrivals' } | { cmd: 'reset' } | { cmd: 'exit' };

let count = 0;
let unmarked = 0;
let recording = false;
let seqs: number[] = [];
let times: number[] = [];

const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (c: string) => {
    body += c;
  });
  req.on('end', () => {
    const t = now();
    count++;
    MARK_RE.lastIndex = 0;
    const m = MARK_RE.exec(body);
    if (m === null) unmarked++;
    else if (recording) {
      seqs.push(Number(m[2]));
      times.push(t);
    }
    res.writeHead(204);
    res.end();
  });
});
server.keepAliveTimeout = 60_000;

server.listen(0, '127.0.0.1', () => {
  const addr = server.address();
  process.send!({ ready: true, port: typeof addr === 'object' && addr !== null ? addr.port : 0 });
});

process.on('message', (m: Command) => {
  switch (m.cmd) {
    case 'stats':
      process.send!({ count, unmarked, t: now() });
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
