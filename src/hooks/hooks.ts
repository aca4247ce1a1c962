// Hook registry and fold. Handlers run in ascending priority (lower first, as
// in MongooseIM). Each hook folds an accumulator (HookAccs in catalogue.ts,
// MongooseIM's mongoose_acc results): a handler gets the parameters and the
// accumulator so far and returns the new accumulator, nothing (unchanged),
// or STOP to end the fold. A handler that throws is logged and skipped:
// hooks never break routing.
import type { HookAcc, HookCatalogue, HookName } from './catalogue.ts';

export const STOP = Symbol('stop');
/** What a handler of a hook without an accumulator returns. */
export type HookResult = void | typeof STOP;

export type HookHandler<N extends HookName> = (params: HookCatalogue[N], acc: HookAcc<N>) => HookAcc<N> | HookResult;

export interface HookRegistration<N extends HookName = HookName> {
  hook: N;
  /** Virtual host the handler is for; "*" for every host. */
  host: string;
  priority: number;
  handler: HookHandler<N>;
  /** For logs: who registered it. */
  owner: string;
}

export interface HookErrorSink {
  (err: unknown, hook: HookName, owner: string): void;
}

type Entry = { priority: number; handler: (p: any, acc: any) => unknown; owner: string; host: string };

export class Hooks {
  #table = new Map<string, Entry[]>();
  #onError: HookErrorSink;

  constructor(onError: HookErrorSink) {
    this.#onError = onError;
  }

  add<N extends HookName>(reg: HookRegistration<N>): void {
    const key = reg.hook;
    const list = this.#table.get(key) ?? [];
    list.push({ priority: reg.priority, handler: reg.handler, owner: reg.owner, host: reg.host });
    // Stable sort keeps registration order among equal priorities.
    list.sort((a, b) => a.priority - b.priority);
    this.#table.set(key, list);
  }

  remove(owner: string): void {
    for (const [key, list] of this.#table) this.#table.set(key, list.filter((e) => e.owner !== owner));
  }

  has(hook: HookName): boolean {
    const list = this.#table.get(hook);
    return list !== undefined && list.length > 0;
  }

  /**
   * Folds the handlers of `hook` registered for `host` (or for every host)
   * over `acc`: each gets the accumulator the previous one returned (one
   * returning nothing leaves it as it was). Returns the last accumulator, or
   * STOP when a handler stopped the fold.
   */
  fold<N extends HookName>(hook: N, host: string, params: HookCatalogue[N], acc: HookAcc<N>): HookAcc<N> | typeof STOP {
    const list = this.#table.get(hook);
    if (list === undefined) return acc;
    for (let i = 0; i < list.length; i++) {
      const e = list[i]!;
      if (e.host !== '*' && e.host !== host) continue;
      let r: unknown;
      try {
        r = e.handler(params, acc);
      } catch (err) {
        this.#onError(err, hook, e.owner);
        continue;
      }
      if (r === STOP) return STOP;
      if (r !== undefined) acc = r as HookAcc<N>;
    }
    return acc;
  }

  /** Runs a hook whose accumulator nobody reads; false when a handler stopped the fold. */
  run<N extends HookName>(hook: N, host: string, params: HookCatalogue[N]): boolean {
    return this.fold(hook, host, params, undefined as HookAcc<N>) !== STOP;
  }
}
