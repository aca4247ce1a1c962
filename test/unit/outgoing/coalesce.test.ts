import { test } from 'node:test';
import assert from 'node:assert/strict';
import net, { type AddressInfo } from 'node:net';
import { createWriteCoalescer } from '../../../src/outgoing/coalesce.ts';

async function pair(): Promise<{ client: net.Socket; chunks: Buffer[]; close(): void }> {
  const chunks: Buffer[] = [];
  const server = net.createServer((s) => s.on('data', (d: Buffer) => chunks.push(d)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const client = net.connect((server.address() as AddressInfo).port, '127.0.0.1');
  await new Promise<void>((r) => client.once('connect', () => r()));
  return { client, chunks, close: () => { client.destroy(); server.close(); } };
}

test('writes made while the sockets are held leave together once the event-loop turn is over', async () => {
  const p = await pair();
  const c = createWriteCoalescer();
  c.track(p.client);
  c.hold();
  c.hold(); // a second request of the same burst changes nothing
  assert.equal(p.client.writableCorked, 1);
  p.client.write('one ');
  p.client.write('two ');
  assert.equal(p.client.writableLength, 8, 'nothing has left while held');
  await new Promise((r) => setImmediate(r));
  assert.equal(p.client.writableCorked, 0);
  assert.equal(p.client.writableLength, 0);
  while (Buffer.concat(p.chunks).toString() !== 'one two ') await new Promise((r) => setTimeout(r, 5));
  p.close();
});

test('a closed socket is no longer tracked', async () => {
  const p = await pair();
  const c = createWriteCoalescer();
  c.track(p.client);
  assert.equal(c.size, 1);
  p.close();
  await new Promise((r) => p.client.once('close', r));
  assert.equal(c.size, 0);
  c.hold();
});
