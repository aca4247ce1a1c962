// Hook registry and fold. Handlers run in ascending priority (lower first, as
// in MongooseIM). A handler returns nothing (go on), or STOP to end the fold.
// A handler that throws is logged and skipped: hooks never break routing.
import type { HookCatalogue, HookName } from './catalogue.ts';

export const STOP = Symbol('stop');
export type HookResult = void | typeof STOP;

export type HookHandler<N extends HookName> = (params: HookCatalogue[N]) => HookResult;

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

type Entry = { priority: number; handler: (p: any) => HookResult; owner: string; host: string };

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
   * Runs the handlers of `hook` registered for `host` (or for every host).
   * Returns false when a handler stopped the fold.
   */
  run<N extends HookName>(hook: N, host: string, params: HookCatalogue[N]): boolean {
    const list = this.#table.get(hook);
    if (list === undefined) return true;
    for (let i = 0; i < list.length; i++) {
      const e = list[i]!;
      if (e.host !== '*' && e.host !== host) continue;
      let r: HookResult;
      try {
        r = e.handler(params);
      } catch (err) {
        this.#onError(err, hook, e.owner);
        continue;
      }
      if (r === STOP) return false;
    }
    return true;
  }
}
