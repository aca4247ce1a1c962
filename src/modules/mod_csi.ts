// XEP-0352 Client State Indication. A client that says it is <inactive/>
// (a phone in a pocket) is not woken by every presence change of its
// contacts: presence updates wait, only the latest per contact, until it
// says <active/> again or more than buffer_max contacts have one waiting.
// Messages and everything else go out at once. The XEP leaves what to hold
// to the server (§6); this is the common choice.
import { Counter, type Registry } from 'prom-client';
import { custom, describe, fail, int, section, validate } from '../config/schema.ts';
import type { C2SStream } from '../hooks/catalogue.ts';
import { STOP, type HookRegistration } from '../hooks/hooks.ts';
import { NS_CSI } from '../xmpp/ns.ts';
import type { Element } from '../xmpp/xml.ts';
import type { ModuleDefinition, ModuleInstance } from './types.ts';

export interface CsiOpts {
  /** Contacts whose presence may wait; 0: nothing waits. "infinity" is stored as Number.MAX_SAFE_INTEGER. */
  buffer_max: number;
}

const spec = section(
  {
    buffer_max: custom(
      (value, p, ctx) => {
        if (value === 'infinity') return Number.MAX_SAFE_INTEGER;
        if (typeof value === 'string') fail(p, `expected a non-negative integer or "infinity", got ${describe(value)}`);
        return validate(int({ min: 0 }), value, p, ctx);
      },
      { default: 20 },
    ),
  },
  { default: true },
);

/** MongooseIM's instrumentation events mod_csi_active / mod_csi_inactive (metric count), by host type. */
export const CSI_ACTIVE = 'mod_csi_active_count';
export const CSI_INACTIVE = 'mod_csi_inactive_count';

interface CsiMetrics {
  active: Counter<'host_type'>;
  inactive: Counter<'host_type'>;
}

function csiMetrics(registry: Registry, hosts: readonly string[]): CsiMetrics {
  const make = (name: string, help: string) =>
    (registry.getSingleMetric(name) as Counter<'host_type'> | undefined) ?? new Counter({ name, help, labelNames: ['host_type'], registers: [registry] });
  const m = {
    active: make(CSI_ACTIVE, 'Clients that said they became active (XEP-0352 <active/>)'),
    inactive: make(CSI_INACTIVE, 'Clients that said they became inactive (XEP-0352 <inactive/>)'),
  };
  // Declared at zero for every host, so a scrape shows them before the first client.
  for (const h of hosts) {
    m.active.inc({ host_type: h }, 0);
    m.inactive.inc({ host_type: h }, 0);
  }
  return m;
}

interface CsiState {
  /** Presence waiting, by sender (full JID), in the order of each sender's latest. */
  held: Map<string, Element>;
  /** While the held presence is written: let it through. */
  flushing: boolean;
}

/** Only availability changes wait: subscription requests and errors go out at once. */
function heldBack(el: Element): boolean {
  if (el.name !== 'presence') return false;
  const t = el.attrs.type;
  return t === undefined || t === 'unavailable';
}

export class ClientStateIndication {
  #max: number;
  /** Inactive streams only; a stream is active until it says otherwise (§4). */
  #inactive = new WeakMap<C2SStream, CsiState>();
  #metrics: CsiMetrics | null;

  constructor(opts: CsiOpts, metrics: CsiMetrics | null = null) {
    this.#max = opts.buffer_max;
    this.#metrics = metrics;
  }

  hooks(): HookRegistration<any>[] {
    const owner = 'mod_csi';
    return [
      { hook: 'c2s_stream_features', host: '*', priority: 60, owner, handler: (_p: unknown, acc: string) => acc + `<csi xmlns='${NS_CSI}'/>` },
      { hook: 'user_send_xmlel', host: '*', priority: 60, owner, handler: (p: { stream: C2SStream; el: Element }) => this.#received(p.stream, p.el) },
      { hook: 'xmpp_presend_element', host: '*', priority: 10, owner, handler: (p: { stream: C2SStream; el: Element }) => this.#sending(p.stream, p.el) },
      // A resumed session starts active; what waited for the old connection goes to the new one.
      { hook: 'c2s_copy_session', host: '*', priority: 50, owner, handler: (p: { from: C2SStream; to: C2SStream }) => this.#flush(p.from, p.to) },
    ];
  }

  #received(stream: C2SStream, el: Element): typeof STOP | undefined {
    if (el.attrs.xmlns !== NS_CSI) return undefined;
    if (stream.state !== 'bound') return STOP;
    if (el.name === 'inactive') {
      if (!this.#inactive.has(stream)) this.#inactive.set(stream, { held: new Map(), flushing: false });
      this.#metrics?.inactive.inc({ host_type: stream.domain });
    } else if (el.name === 'active') {
      this.#flush(stream, stream);
      this.#metrics?.active.inc({ host_type: stream.domain });
    }
    return STOP;
  }

  #sending(stream: C2SStream, el: Element): typeof STOP | undefined {
    const st = this.#inactive.get(stream);
    if (st === undefined || st.flushing || this.#max === 0 || !heldBack(el)) return undefined;
    const from = el.attrs.from ?? '';
    st.held.delete(from);
    st.held.set(from, el);
    if (st.held.size > this.#max) this.#write(stream, st);
    return STOP;
  }

  /** Ends `from`'s inactivity; what it held goes to `to`. */
  #flush(from: C2SStream, to: C2SStream): void {
    const st = this.#inactive.get(from);
    if (st === undefined) return;
    this.#inactive.delete(from);
    if (from === to) this.#write(to, st);
    else for (const el of st.held.values()) to.send(el);
  }

  #write(stream: C2SStream, st: CsiState): void {
    const held = [...st.held.values()];
    st.held.clear();
    st.flushing = true;
    try {
      for (const el of held) stream.send(el);
    } finally {
      st.flushing = false;
    }
  }
}

export const definition: ModuleDefinition<CsiOpts> = {
  name: 'mod_csi',
  configSpec: spec,
  create(ctx, opts): ModuleInstance {
    const csi = new ClientStateIndication(opts, csiMetrics(ctx.metrics, ctx.hosts));
    return { hooks: () => csi.hooks() };
  },
};
