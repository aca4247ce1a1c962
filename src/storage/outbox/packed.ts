// How a batch of outbox writes crosses from the server's thread to the
// SQLite outbox's writer thread (sqlite-worker.ts). A structured clone of an
// array of row objects, each with its own payload buffer, costs a few
// microseconds per row on the sending thread; packed, a row is three strings
// and four numbers, and the payloads travel in one transferred buffer.
import type { NewOutboxRow, SettleOp } from './types.ts';

/**
 * Per row, three strings in `strs` (handler, host type, event id) and four
 * numbers in `nums` (created at, claimed, offset and length of its payload
 * in `payloads`); settle ops flattened into `ops`, each as its code, its id,
 * then its own fields.
 */
export interface PackedBatch {
  strs: string[];
  nums: Float64Array;
  payloads: ArrayBuffer;
  ops: Array<number | string>;
}

const OP_DELIVERED = 0;
const OP_RELEASE = 1;
const OP_RETRY = 2;
const OP_DEAD = 3;

/** Appends `op` to a flat list of settle ops. */
export function packOp(out: Array<number | string>, op: SettleOp): void {
  switch (op.op) {
    case 'delivered':
      out.push(OP_DELIVERED, op.id);
      break;
    case 'release':
      out.push(OP_RELEASE, op.id);
      break;
    case 'retry':
      out.push(OP_RETRY, op.id, op.attempts, op.nextAt, op.error);
      break;
    case 'dead':
      out.push(OP_DEAD, op.id, op.attempts, op.at, op.error);
      break;
  }
}

/** Packs rows and ops; the payloads are copied into one buffer, to be transferred. */
export function packBatch(rows: readonly NewOutboxRow[], ops: readonly SettleOp[]): PackedBatch {
  const n = rows.length;
  const strs: string[] = new Array(n * 3);
  const nums = new Float64Array(n * 4);
  let size = 0;
  for (let i = 0; i < n; i++) size += rows[i]!.payload.byteLength;
  const payloads = new ArrayBuffer(size);
  const bytes = new Uint8Array(payloads);
  let off = 0;
  for (let i = 0; i < n; i++) {
    const r = rows[i]!;
    const s = i * 3;
    strs[s] = r.handler;
    strs[s + 1] = r.hostType;
    strs[s + 2] = r.eventId;
    const len = r.payload.byteLength;
    bytes.set(r.payload, off);
    nums[i * 4] = r.createdAt;
    nums[i * 4 + 1] = r.claimed ? 1 : 0;
    nums[i * 4 + 2] = off;
    nums[i * 4 + 3] = len;
    off += len;
  }
  const flat: Array<number | string> = [];
  for (const o of ops) packOp(flat, o);
  return { strs, nums, payloads, ops: flat };
}

/** The rows and ops of a packed batch (payloads are views into its buffer). */
export function unpackBatch(b: PackedBatch): { rows: NewOutboxRow[]; ops: SettleOp[] } {
  const rows: NewOutboxRow[] = [];
  const { strs, nums } = b;
  for (let i = 0, n = nums.length / 4; i < n; i++) {
    const s = i * 3;
    rows.push({
      handler: strs[s]!,
      hostType: strs[s + 1]!,
      eventId: strs[s + 2]!,
      payload: new Uint8Array(b.payloads, nums[i * 4 + 2]!, nums[i * 4 + 3]!),
      createdAt: nums[i * 4]!,
      claimed: nums[i * 4 + 1] === 1,
    });
  }
  return { rows, ops: unpackOps(b.ops) };
}

export function unpackOps(o: ReadonlyArray<number | string>): SettleOp[] {
  const ops: SettleOp[] = [];
  for (let i = 0; i < o.length; ) {
    const code = o[i++] as number;
    const id = o[i++] as number;
    if (code === OP_DELIVERED) ops.push({ op: 'delivered', id });
    else if (code === OP_RELEASE) ops.push({ op: 'release', id });
    else if (code === OP_RETRY) ops.push({ op: 'retry', id, attempts: o[i++] as number, nextAt: o[i++] as number, error: o[i++] as string });
    else ops.push({ op: 'dead', id, attempts: o[i++] as number, at: o[i++] as number, error: o[i++] as string });
  }
  return ops;
}
