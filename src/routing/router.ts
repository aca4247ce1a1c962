// Routing of stanzas between local entities (RFC 6120 §10, RFC 6121 §8).
// Petrel serves its own domains only: a stanza for any other domain is
// answered with remote-server-not-found (there is no server-to-server link).
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Acc } from '../hooks/catalogue.ts';
import type { Hooks } from '../hooks/hooks.ts';
import type { IqHandler, IqHandlerSpec, RouterApi, ServiceHandler, SessionView } from './types.ts';
import type { UserStore } from '../storage/types.ts';
import { Element } from '../xmpp/xml.ts';
import { parseJid, type JID } from '../xmpp/jid.ts';
import { StanzaError, errorReply } from '../xmpp/errors.ts';
import type { SessionManager, ManagedSession } from './sm.ts';

/** Presence handling lives beside the router; the router hands presence stanzas to it. */
export interface PresenceHandler {
  /** A presence stanza for a local user's bare or full JID (inbound side). */
  inbound(from: JID, to: JID, packet: Element, acc: Acc): void;
}

let refCounter = 0;
const refBase = randomUUID().slice(0, 8);

export class Router implements RouterApi {
  #hosts: Set<string>;
  #hooks: Hooks;
  #sm: SessionManager;
  #users: UserStore;
  #logger: Logger;
  #serverIq = new Map<string, IqHandler>();
  #userIq = new Map<string, IqHandler>();
  #services = new Map<string, ServiceHandler>();
  presence: PresenceHandler | null = null;
  /**
   * Set in a cluster (general.sm_backend = "cets"): takes a stanza for a
   * service address (a group chat room) that another node serves and
   * returns true; null on a single node.
   */
  forwardToService: ((from: JID, to: JID, packet: Element) => boolean) | null = null;

  constructor(opts: { hosts: readonly string[]; hooks: Hooks; sm: SessionManager; users: UserStore; logger: Logger }) {
    this.#hosts = new Set(opts.hosts);
    this.#hooks = opts.hooks;
    this.#sm = opts.sm;
    this.#users = opts.users;
    this.#logger = opts.logger;
  }

  isLocal(domain: string): boolean {
    return this.#hosts.has(domain) || this.#services.has(domain);
  }

  addService(domain: string, handler: ServiceHandler): void {
    if (this.#hosts.has(domain) || this.#services.has(domain)) throw new Error(`the domain ${domain} is already served`);
    this.#services.set(domain, handler);
  }

  addIqHandler(spec: IqHandlerSpec): void {
    (spec.scope === 'server' ? this.#serverIq : this.#userIq).set(spec.xmlns, spec.handler);
  }

  newAcc(from: JID, to: JID, packet: Element): Acc {
    return {
      ref: refBase + (++refCounter).toString(36),
      timestamp: Date.now(),
      hostType: from.domain,
      lserver: from.domain,
      element: packet,
      from,
      to,
    };
  }

  route(from: JID, to: JID, packet: Element, acc?: Acc): void {
    const a = acc ?? this.newAcc(from, to, packet);
    if (!this.#hosts.has(to.domain)) {
      const service = this.#services.get(to.domain);
      if (service !== undefined) {
        // A cluster: a room's stanzas go to the one node that serves it.
        if (this.forwardToService !== null && this.forwardToService(from, to, packet)) return;
        try {
          service(from, to, packet, a);
        } catch (err) {
          this.#logger.error({ what: 'service_failed', domain: to.domain, err: String(err) }, 'a service failed on a stanza');
          this.routeError(packet, from, to, 'internal-server-error', 'cancel');
        }
        return;
      }
      this.routeError(packet, from, to, 'remote-server-not-found', 'cancel', 'this server has no connection to other servers');
      return;
    }
    if (to.local === '') {
      this.#toServer(from, to, packet, a);
      return;
    }
    switch (packet.name) {
      case 'message':
        this.#message(from, to, packet, a);
        return;
      case 'presence':
        if (this.presence !== null) this.presence.inbound(from, to, packet, a);
        return;
      case 'iq':
        this.#iqToUser(from, to, packet, a);
        return;
    }
  }

  /** A stanza another node forwarded to this node's service for `to.domain`; false when none is served here. */
  serveLocally(from: JID, to: JID, packet: Element): boolean {
    const service = this.#services.get(to.domain);
    if (service === undefined) return false;
    try {
      service(from, to, packet, this.newAcc(from, to, packet));
    } catch (err) {
      this.#logger.error({ what: 'service_failed', domain: to.domain, err: String(err) }, 'a service failed on a stanza');
      this.routeError(packet, from, to, 'internal-server-error', 'cancel');
    }
    return true;
  }

  routeError(packet: Element, from: JID, to: JID, condition: string, type?: string, text?: string): void {
    // RFC 6120 §8.3.1: never answer an error with an error.
    if (packet.attrs.type === 'error') return;
    const reply = errorReply(packet, new StanzaError(condition, type as never, text));
    reply.attrs.from = to.full;
    reply.attrs.to = from.full;
    this.route(to, from, reply);
  }

  /** Delivers to one session after the filter_local_packet hook; false when a handler dropped it. */
  deliver(session: SessionView, from: JID, packet: Element, acc: Acc): boolean {
    // Another node's session: its node runs the hook when it delivers.
    if (session.clusterNode !== undefined) {
      this.#hooks.run('remote_delivery', session.jid.domain, { acc, from, to: session.jid, packet });
      session.send(packet, false, acc.ref);
      return true;
    }
    if (!this.#hooks.run('filter_local_packet', session.jid.domain, { acc, from, to: session.jid, packet })) return false;
    session.send(packet);
    return true;
  }

  #toServer(from: JID, to: JID, packet: Element, acc: Acc): void {
    if (packet.name === 'iq') {
      this.#iq(this.#serverIq, from, to, packet, undefined);
      return;
    }
    // Messages and presence addressed to the server itself have no recipient here.
    if (packet.name === 'message' && packet.attrs.type !== 'error' && packet.attrs.type !== 'groupchat' && packet.attrs.type !== 'headline') {
      this.routeError(packet, from, to, 'service-unavailable', 'cancel');
    }
    void acc;
  }

  #message(from: JID, to: JID, packet: Element, acc: Acc): void {
    const type = packet.attrs.type ?? 'normal';
    if (to.resource !== '') {
      const s = this.#sm.byFull(to.full);
      if (s !== undefined) {
        this.deliver(s, from, packet, acc);
        return;
      }
      // RFC 6121 §8.5.3.2.1: no such resource.
      if (type === 'groupchat') {
        this.routeError(packet, from, to, 'service-unavailable', 'cancel');
        return;
      }
      if (type === 'headline' || type === 'error') return;
    }
    // RFC 6121 §8.5.2.1: to the bare JID.
    const sessions = this.#sm.byBare(to.bare);
    if (type === 'groupchat') {
      this.routeError(packet, from, to, 'service-unavailable', 'cancel');
      return;
    }
    let targets: ManagedSession[] = [];
    if (sessions.length > 0) {
      let best = -129;
      for (const s of sessions) {
        if (!s.available || s.priority < 0) continue;
        if (type === 'headline') {
          targets.push(s);
        } else if (s.priority > best) {
          best = s.priority;
          targets = [s];
        } else if (s.priority === best) {
          targets.push(s);
        }
      }
    }
    if (targets.length > 0) {
      for (const s of targets) this.deliver(s, from, packet, acc);
      return;
    }
    if (type === 'headline' || type === 'error') return;
    this.#offline(from, to.bareJid(), packet, acc);
  }

  #offline(from: JID, to: JID, packet: Element, acc: Acc): void {
    const checked = this.#users.userExists(to.local, to.domain).then(
      (exists) => {
        if (!exists) {
          this.routeError(packet, from, to, 'service-unavailable', 'cancel');
          return;
        }
        if (!this.#hooks.run('filter_local_packet', to.domain, { acc, from, to, packet })) return;
        // A handler (mod_offline) stores it and stops the hook; if none does, it is dropped
        // silently, which RFC 6121 §8.5.2.2.1 allows for chat and normal messages.
        this.#hooks.run('offline_message', to.domain, { acc, from, to, packet });
      },
      (err) => this.#logger.error({ what: 'offline_route_failed', err: String(err) }, 'could not check the recipient'),
    );
    // Settles after the hook ran, so that what its handlers hold is known by then.
    acc.hold?.(checked);
  }

  #iqToUser(from: JID, to: JID, packet: Element, acc: Acc): void {
    if (to.resource !== '') {
      const s = this.#sm.byFull(to.full);
      if (s !== undefined) {
        this.deliver(s, from, packet, acc);
        return;
      }
      const t = packet.attrs.type;
      if (t === 'get' || t === 'set') this.routeError(packet, from, to, 'service-unavailable', 'cancel');
      return;
    }
    // An IQ to a bare JID is answered by the server on the user's behalf (RFC 6120 §10.5.4).
    this.#iq(this.#userIq, from, to, packet, undefined);
  }

  /**
   * An IQ a client sent without `to`: handled on behalf of the account
   * (RFC 6120 §10.3.3), by a user-scope handler, else by a server one.
   */
  handleOwnIq(from: JID, packet: Element, session: SessionView): void {
    const ns = packet.firstElement()?.attrs.xmlns ?? '';
    const table = this.#userIq.has(ns) || !this.#serverIq.has(ns) ? this.#userIq : this.#serverIq;
    const to = table === this.#userIq ? from.bareJid() : parseJid(from.domain);
    this.#iq(table, from, to, packet, session);
  }

  #iq(table: Map<string, IqHandler>, from: JID, to: JID, packet: Element, session: SessionView | undefined): void {
    const type = packet.attrs.type;
    if (type !== 'get' && type !== 'set') return; // results and errors to the server end here
    const payload = packet.firstElement();
    if (payload === undefined || packet.getChildren().length !== 1) {
      this.routeError(packet, from, to, 'bad-request', 'modify', 'an IQ get or set carries exactly one child');
      return;
    }
    const handler = table.get(payload.attrs.xmlns ?? '');
    if (handler === undefined) {
      this.routeError(packet, from, to, 'service-unavailable', 'cancel');
      return;
    }
    const answer = (result: Element | undefined) => {
      const reply = new Element('iq', { type: 'result', id: packet.attrs.id, from: to.full, to: from.full });
      if (result !== undefined) reply.children.push(result);
      this.route(to, from, reply);
    };
    const fail = (err: unknown) => {
      if (err instanceof StanzaError) {
        const reply = errorReply(packet, err);
        reply.attrs.from = to.full;
        reply.attrs.to = from.full;
        this.route(to, from, reply);
      } else {
        this.#logger.error({ what: 'iq_handler_failed', xmlns: payload.attrs.xmlns, err: String(err) }, 'IQ handler failed');
        this.routeError(packet, from, to, 'internal-server-error', 'cancel');
      }
    };
    try {
      const r = handler({ from, to, type, iq: packet, payload, session });
      if (r instanceof Promise) r.then(answer, fail);
      else answer(r);
    } catch (err) {
      fail(err);
    }
  }
}
