// The sender thread for the PostgreSQL outbox (sender_thread = "worker" with
// outbox_backend = "rdbms"): the engine runs here on an outbox connection of
// its own, which claims and settles; the server's thread keeps appending
// through its own, and tells this thread (a "nudge") which handlers have new
// rows, so they are claimed without waiting for the poll. Messages follow
// the SQLite writer thread's protocol: {seq, body} requests, answered with
// {seq, ok, value | error}; reports are posted as {ext}.
import { parentPort, workerData } from 'node:worker_threads';
import type { PgPoolSettings } from '../../../storage/postgres.ts';
import { openPostgresOutbox } from '../../../storage/outbox/postgres.ts';
import type { OutboxHost } from '../../../storage/outbox/sqlite-worker.ts';
import { attachOutboxExtension, type ThreadInit } from './thread.ts';

export interface PgThreadData {
  settings: PgPoolSettings;
  init: ThreadInit;
  maxRows?: number;
  maxBytes?: number;
  ownerTimeoutMs?: number;
  maxRowsPerOwner?: number;
}

const port = parentPort!;
const data = workerData as PgThreadData;

try {
  const store = await openPostgresOutbox(data.settings, {
    maxRows: data.maxRows,
    maxBytes: data.maxBytes,
    ownerTimeoutMs: data.ownerTimeoutMs,
    maxRowsPerOwner: data.maxRowsPerOwner,
    onWarning: (what, message) => port.postMessage({ ext: [3, 'warn', JSON.stringify({ what }), message] }),
  });
  const host: OutboxHost = {
    settle: (op) => store.settle(op),
    claim: (h, now, limit, maxBytes) => store.claim(h, now, limit, maxBytes),
    depth: () => store.depth(),
    post: (m) => port.postMessage({ ext: m }),
  };
  const ext = await attachOutboxExtension(host, data.init);
  port.on('message', (m: { seq: number; body: { type: string } }) => {
    Promise.resolve()
      .then(() => ext.request(m.body))
      .then(async (v) => {
        if (m.body.type === 'close') await store.close();
        port.postMessage({ seq: m.seq, ok: true, value: v ?? null });
        if (m.body.type === 'close') port.close();
      })
      .catch((err: unknown) => port.postMessage({ seq: m.seq, ok: false, error: err instanceof Error ? err.message : String(err) }));
  });
  port.postMessage({ seq: 0, ok: true, value: null });
} catch (err) {
  port.postMessage({ seq: 0, ok: false, error: err instanceof Error ? err.message : String(err) });
}
