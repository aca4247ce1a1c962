// XEP-0280 Message Carbons: a user's resources that enable carbons get a
// copy of the chat messages their other resources send (<sent/>) and
// receive (<received/>), so that every device shows the whole conversation.
import { section, str } from '../config/schema.ts';
import type { Acc } from '../hooks/catalogue.ts';
import type { HookRegistration } from '../hooks/hooks.ts';
import { StanzaError } from '../xmpp/errors.ts';
import type { JID } from '../xmpp/jid.ts';
import { NS_CARBONS, NS_CHATSTATES, NS_CLIENT, NS_FORWARD, NS_HINTS, NS_MUC_USER, NS_RECEIPTS } from '../xmpp/ns.ts';
import { Element } from '../xmpp/xml.ts';
import type { ModuleDefinition, ModuleInstance, RouterApi, SessionsApi, SessionView } from './types.ts';

export interface CarbonCopyOpts {
  iqdisc: { type: string };
}

const spec = section(
  {
    // MongooseIM's IQ processing discipline; IQs are always handled as they come here.
    iqdisc: section({ type: str({ oneOf: ['no_queue', 'one_queue', 'parallel', 'queues'], default: 'no_queue' }) }, { default: true }),
  },
  { default: true },
);

const NS_MARKERS = 'urn:xmpp:chat-markers:0';

/**
 * XEP-0280 §6 (eligibility): a message of type chat, or of type normal with
 * a body, or carrying the payloads of one-to-one chat (receipts, chat
 * states, markers); never one marked <private/> or <no-copy/> (XEP-0334),
 * never a carbon itself, never a group chat message or a MUC private one.
 */
export function eligible(m: Element): boolean {
  if (m.name !== 'message') return false;
  const type = m.attrs.type ?? 'normal';
  if (type === 'groupchat' || type === 'headline' || type === 'error') return false;
  let im = type === 'chat';
  for (const c of m.children) {
    if (typeof c === 'string') continue;
    const ns = c.attrs.xmlns;
    if (ns === NS_CARBONS) return false; // <private/>, or a carbon copy
    if (ns === NS_HINTS && c.name === 'no-copy') return false;
    if (ns === NS_MUC_USER) return false;
    if (c.name === 'body' && (ns === undefined || ns === NS_CLIENT)) im = true;
    else if (ns === NS_RECEIPTS || ns === NS_CHATSTATES || ns === NS_MARKERS) im = true;
  }
  return im;
}

/** `<message from=bare to=resource><{kind} xmlns=carbons><forwarded><message .../></forwarded></{kind}></message>` (§7, §8). */
function carbon(kind: 'sent' | 'received', user: JID, to: string, original: Element): Element {
  const inner = original.clone();
  // The forwarded stanza stands alone inside another (XEP-0297 §3).
  inner.attrs.xmlns = NS_CLIENT;
  const outer = new Element('message', { from: user.bare, to, type: original.attrs.type ?? 'normal' });
  outer.c(kind, { xmlns: NS_CARBONS }).c('forwarded', { xmlns: NS_FORWARD }).children.push(inner);
  return outer;
}

export class CarbonCopy {
  #router: RouterApi;
  #sessions: SessionsApi;
  /**
   * Messages of this turn delivered to a user with carbons enabled: the
   * resources each reached (by the routing's reference), so that one copy
   * goes, after all deliveries, to every enabled resource the message missed.
   */
  #delivered = new Map<string, { user: JID; reached: Set<string>; packet: Element }>();
  #flushQueued = false;

  constructor(router: RouterApi, sessions: SessionsApi) {
    this.#router = router;
    this.#sessions = sessions;
  }

  /**
   * The flag lives on the session: a new binding starts without carbons, a
   * resumed session keeps them, an ended one is out of the table; in a
   * cluster it travels with the replicated session, so that every node
   * knows the other nodes' resources that enabled carbons.
   */
  set(session: SessionView, on: boolean): void {
    if ((session.carbons === true) === on) return;
    session.carbons = on;
    this.#sessions.changed?.(session);
  }

  /** The user's resources, on any node, that enabled carbons. */
  #enabled(bare: string): SessionView[] {
    const out: SessionView[] = [];
    for (const s of this.#sessions.byBare(bare)) if (s.carbons === true) out.push(s);
    return out;
  }

  hooks(): HookRegistration<any>[] {
    const owner = 'mod_carboncopy';
    const receiving = (p: { acc: Acc; from: JID; to: JID; packet: Element }) => this.#receiving(p.acc, p.to, p.packet);
    return [
      // Only the sender's node runs it, so a <sent/> copy is made once.
      { hook: 'user_send_message', host: '*', priority: 90, owner, handler: (p: { from: JID; packet: Element }) => this.#sent(p.from, p.packet) },
      // <received/> copies are made by the node that routed the message,
      // which sees every resource it reached, on this node and on others.
      { hook: 'filter_local_packet', host: '*', priority: 90, owner, handler: receiving },
      { hook: 'remote_delivery', host: '*', priority: 90, owner, handler: receiving },
    ];
  }

  /** §8: a copy of what a resource sends goes to the user's other enabled resources. */
  #sent(from: JID, packet: Element): undefined {
    if (!eligible(packet)) return undefined;
    for (const s of this.#enabled(from.bare)) {
      const full = s.jid.full;
      if (full === from.full) continue;
      const copy = carbon('sent', from, full, packet);
      this.#router.route(from.bareJid(), s.jid, copy);
    }
    return undefined;
  }

  /** §7: noted per delivery; the copies go once the routing of the message is over. */
  #receiving(acc: Acc, to: JID, packet: Element): undefined {
    // Another node routed it: that node makes the copies.
    if (acc.routedBy !== undefined) return undefined;
    if (to.resource === '' || packet.name !== 'message') return undefined;
    if (this.#enabled(to.bare).length === 0 || !eligible(packet)) return undefined;
    let d = this.#delivered.get(acc.ref);
    if (d === undefined) this.#delivered.set(acc.ref, (d = { user: to.bareJid(), reached: new Set(), packet }));
    d.reached.add(to.full);
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => this.#flushReceived());
    }
    return undefined;
  }

  #flushReceived(): void {
    this.#flushQueued = false;
    const all = [...this.#delivered.values()];
    this.#delivered.clear();
    for (const d of all) {
      for (const s of this.#enabled(d.user.bare)) {
        const full = s.jid.full;
        if (d.reached.has(full)) continue;
        this.#router.route(d.user, s.jid, carbon('received', d.user, full, d.packet));
      }
    }
  }
}

export const definition: ModuleDefinition<CarbonCopyOpts> = {
  name: 'mod_carboncopy',
  configSpec: spec,
  create(ctx): ModuleInstance {
    const cc = new CarbonCopy(ctx.router, ctx.sessions);
    // §2: the server announces support in its disco#info.
    ctx.features.add(NS_CARBONS);
    return {
      hooks: () => cc.hooks(),
      iqHandlers: () => [
        {
          xmlns: NS_CARBONS,
          scope: 'server',
          // §4, §5: <enable/> or <disable/> in an IQ set from the resource itself; repeating one is no error.
          handler: (req) => {
            const name = req.payload.name;
            if (req.type !== 'set' || (name !== 'enable' && name !== 'disable')) throw new StanzaError('bad-request', 'modify');
            if (req.session === undefined || req.from.resource === '') throw new StanzaError('not-allowed', 'cancel');
            cc.set(req.session, name === 'enable');
            return undefined;
          },
        },
      ],
    };
  },
};
