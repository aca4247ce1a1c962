// What the suite expects of the outbox, event by event: every append it
// made, what became of it (committed, refused), every claim that returned it
// and what it settled it as. A claim that returns an event it should not
// (claimed already, delivered, dead-lettered, refused, not yet due) is
// written down as a violation; `assertClean` compares the whole ledger with
// the tables once everything is drained.
import assert from 'node:assert/strict';
import { payloadOf, until, type Claimed, type ContractRow, type ContractStore, type Harness, type SettleOp } from './stores.ts';

export type EventState = 'appending' | 'queued' | 'claimed' | 'delivered' | 'dead' | 'refused';

interface Entry {
  key: string;
  handler: string;
  state: EventState;
  id?: number;
  /** Due at (the suite's clock). */
  nextAt: number;
  /** The append has resolved or rejected. */
  settled: boolean;
  /** Claims that returned it (an append made claimed counts as one). */
  claims: number;
  claimedAtAppend: boolean;
  attempts: number;
}

export class Ledger {
  readonly #e = new Map<string, Entry>();
  readonly #byId = new Map<number, Entry>();
  readonly violations: string[] = [];
  #n = 0;
  readonly #prefix: string;
  /** Append promises not yet settled. */
  readonly #pending = new Set<Promise<unknown>>();

  constructor(prefix = 'e') {
    this.#prefix = prefix;
  }

  /** A fresh key. */
  key(): string {
    return `${this.#prefix}${++this.#n}`;
  }

  entry(key: string): Entry | undefined {
    return this.#e.get(key);
  }

  /** Appends a row of a fresh key; the returned promise never rejects (a refusal is written down). */
  append(s: ContractStore, o: { handler: string; at: number; claimed?: boolean; size?: number; mark?: string }): { key: string; done: Promise<number | Error> } {
    const key = this.key();
    const e: Entry = { key, handler: o.handler, state: o.claimed ? 'claimed' : 'appending', nextAt: o.at, settled: false, claims: o.claimed ? 1 : 0, claimedAtAppend: o.claimed ?? false, attempts: 0 };
    this.#e.set(key, e);
    const row: ContractRow = { handler: o.handler, key, payload: payloadOf(key, o.size ?? 0, o.mark ?? ''), createdAt: o.at, claimed: o.claimed ?? false };
    const done = s.append(row).then(
      (id) => {
        e.settled = true;
        e.id = id;
        if (this.#byId.has(id)) this.violations.push(`${key} was given the id ${id} of ${this.#byId.get(id)!.key}`);
        this.#byId.set(id, e);
        if (e.state === 'appending') e.state = 'queued';
        else if (e.state === 'refused') this.violations.push(`${key} resolved after being refused`);
        return id;
      },
      (err: Error) => {
        e.settled = true;
        if (e.claims > (o.claimed ? 1 : 0)) this.violations.push(`${key} was refused but a claim returned it`);
        e.state = 'refused';
        return err;
      },
    );
    this.#pending.add(done);
    void done.finally(() => this.#pending.delete(done));
    return { key, done };
  }

  /** Waits until every append made so far has resolved or rejected. */
  async appendsSettled(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all([...this.#pending]);
  }

  /** Records what a claim at `now` returned. */
  claimed(rows: readonly Claimed[], now: number): void {
    for (const r of rows) {
      const e = this.#e.get(r.key);
      if (e === undefined) {
        this.violations.push(`a claim returned ${r.key}, never appended`);
        continue;
      }
      if (e.id !== undefined && e.id !== r.id) this.violations.push(`${r.key} was claimed with id ${r.id}, appended as ${e.id}`);
      if (e.state !== 'queued' && e.state !== 'appending') this.violations.push(`a claim returned ${r.key} while it was ${e.state}`);
      if (e.nextAt > now) this.violations.push(`a claim at ${now} returned ${r.key}, due at ${e.nextAt}`);
      if (r.attempts !== e.attempts) this.violations.push(`${r.key} was claimed with ${r.attempts} attempts, ${e.attempts} expected`);
      if (e.id === undefined) {
        e.id = r.id;
        this.#byId.set(r.id, e);
      }
      e.state = 'claimed';
      e.claims++;
    }
  }

  /** Settles `key` (which the suite holds claimed) and records what it should become. */
  settle(s: ContractStore, key: string, op: 'delivered' | 'release' | { retry: number } | 'dead', now = 0): void {
    const e = this.#e.get(key);
    assert.ok(e !== undefined && e.id !== undefined, `${key} is known and has an id`);
    if (e.state !== 'claimed') throw new Error(`the suite settles ${key} while it is ${e.state}`);
    let o: SettleOp;
    if (op === 'delivered') {
      o = { op: 'delivered', id: e.id };
      e.state = 'delivered';
    } else if (op === 'release') {
      o = { op: 'release', id: e.id };
      e.state = 'queued';
    } else if (op === 'dead') {
      o = { op: 'dead', id: e.id, attempts: e.attempts + 1, error: `dead ${key}`, at: now };
      e.attempts++;
      e.state = 'dead';
    } else {
      o = { op: 'retry', id: e.id, attempts: e.attempts + 1, nextAt: op.retry, error: `retry ${key}` };
      e.attempts++;
      e.nextAt = op.retry;
      e.state = 'queued';
    }
    s.settle(o);
  }

  /** The store was closed (or its owner died): what the suite held claimed is back in the queue. */
  claimsReleased(): void {
    for (const e of this.#e.values()) if (e.state === 'claimed') e.state = 'queued';
  }

  keysIn(state: EventState): string[] {
    return [...this.#e.values()].filter((e) => e.state === state).map((e) => e.key);
  }

  get entries(): Entry[] {
    return [...this.#e.values()];
  }
}

/** Claims, retrying while the store refuses to (ops it cannot write yet); [] after `maxMs`. */
export async function claimSoon(s: ContractStore, handler: string, now: number, limit: number, maxMs = 10_000): Promise<Claimed[]> {
  let out: Claimed[] = [];
  let last: unknown = null;
  const ok = await until(async () => {
    try {
      out = await s.claim(handler, now, limit);
      return true;
    } catch (err) {
      last = err;
      return false;
    }
  }, maxMs, 20);
  if (!ok) throw new Error(`claims kept failing: ${String(last)}`);
  return out;
}

/**
 * Settles delivered what the suite holds claimed, then claims everything of
 * `handlers` due at `now` and settles it delivered,
 * until the outbox table is empty (read directly); settle ops that a failure
 * left unwritten are waited for, within `maxMs`.
 */
export async function drain(h: Harness, s: ContractStore, ledger: Ledger, handlers: readonly string[], now: number, maxMs = 10_000): Promise<void> {
  await ledger.appendsSettled();
  // What the suite still holds claimed is delivered first.
  for (const key of ledger.keysIn('claimed')) ledger.settle(s, key, 'delivered');
  const emptied = await until(async () => {
    for (const handler of handlers) {
      for (;;) {
        const rows = await claimSoon(s, handler, now, 200);
        ledger.claimed(rows, now);
        for (const r of rows) ledger.settle(s, r.key, 'delivered');
        if (rows.length === 0) break;
      }
    }
    await s.depth().catch(() => {});
    return (await h.rows()).length === 0;
  }, maxMs, 20);
  if (!emptied) {
    const left = await h.rows();
    assert.fail(`the outbox still holds ${left.length} row(s) after draining: ${left.slice(0, 10).map((r) => `${r.key}${r.claimed ? ' (claimed)' : ''}`).join(', ')}`);
  }
}

/** Everything drained: every committed event was delivered or dead-lettered exactly once, nothing refused was kept. */
export async function assertClean(h: Harness, ledger: Ledger): Promise<void> {
  assert.deepEqual(ledger.violations, [], 'no claim returned an event it should not have');
  const rows = await h.rows();
  assert.deepEqual(rows.map((r) => r.key), [], 'nothing is left in the outbox');
  const dead = (await h.dead()).map((d) => d.key).sort();
  assert.deepEqual(dead, ledger.keysIn('dead').sort(), 'the dead letters are those dead-lettered, once each');
  for (const e of ledger.entries) {
    assert.ok(e.settled, `the append of ${e.key} resolved or rejected`);
    if (e.state === 'refused') assert.equal(e.claims, e.claimedAtAppend ? 1 : 0, `${e.key} was refused and never claimed`);
    else assert.ok(e.state === 'delivered' || e.state === 'dead', `${e.key} was delivered or dead-lettered (it is ${e.state})`);
  }
}
