// The bus's request timeout after a stall of the process itself: a reply
// that came during the stall is read before the timeout counts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type AddressInfo } from 'node:net';
import { afterPendingInput } from '../../../src/cluster/bus.ts';

function busyFor(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end) { /* the process is stalled */ }
}

test('a reply that arrived while the process was stalled past the timeout is taken, not counted as missing', async () => {
  let received!: (data: string) => void;
  const reply = new Promise<string>((resolve) => (received = resolve));
  const server = createServer((sock) => sock.on('data', (d) => received(d.toString())));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
  await new Promise<void>((resolve) => client.once('connect', resolve));
  try {
    const waited = afterPendingInput(reply, 50);
    client.write('pong');
    busyFor(300);
    assert.equal(await waited, 'pong');
  } finally {
    client.destroy();
    server.close();
  }
});

test('without a reply the timeout counts', async () => {
  const never = new Promise<string>(() => {});
  const r = await afterPendingInput(never, 20);
  assert.equal(typeof r, 'symbol');
});

test('a failure before the timeout is passed on', async () => {
  await assert.rejects(afterPendingInput(Promise.reject(new Error('closed')), 1000), /closed/);
});
