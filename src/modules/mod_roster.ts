// mod_roster: roster get / set / push (RFC 6121 §2). Subscription state
// changes driven by presence live in routing/presence.ts; this module owns
// what the user edits directly.
import type { HookRegistration } from '../hooks/hooks.ts';
import type { HookCatalogue } from '../hooks/catalogue.ts';
import type { ModuleData, ModuleDefinition } from './types.ts';
import { int, section } from '../config/schema.ts';
import { Element } from '../xmpp/xml.ts';
import { StanzaError } from '../xmpp/errors.ts';
import { tryParseJid } from '../xmpp/jid.ts';
import { NS_ROSTER } from '../xmpp/ns.ts';
import { itemElement, pushRosterItem } from '../routing/roster-items.ts';
import type { RosterItem } from '../routing/types.ts';
import { storeBackendSpec, type StoreBackend } from '../storage/select.ts';
import { ROSTER_STORE } from './mod_roster/store.ts';
import { boundedRoster, checkItemLimits, type BoundedRosterStore, type RosterLimits } from './mod_roster/limits.ts';

export type { RosterStore } from './mod_roster/store.ts';

export interface RosterOpts extends RosterLimits {
  /** Where the roster is kept: "internal" (the embedded store) or "rdbms". */
  backend: StoreBackend;
}

/** The roster's store; server.ts hands `store` to routing's Presence as its Roster. */
export interface RosterData extends ModuleData {
  readonly store: BoundedRosterStore;
}

/** MongooseIM's mod_roster removes the roster late in remove_user; the order among modules does not matter here. */
const PRIORITY = 50;

export const definition: ModuleDefinition<RosterOpts, RosterData> = {
  name: 'mod_roster',
  configSpec: section({
    backend: storeBackendSpec(),
    max_items: int({ default: 1000, min: 1, max: 100_000 }),
    max_name_length: int({ default: 256, min: 1, max: 65_536 }),
    max_groups: int({ default: 32, min: 0, max: 1000 }),
    max_group_length: int({ default: 256, min: 1, max: 65_536 }),
  }),
  async openData(stores, opts) {
    const store = boundedRoster(await stores.open(ROSTER_STORE, opts.backend, 'modules.mod_roster.backend'), opts);
    const onRemoved = (p: HookCatalogue['user_removed']) => {
      p.removals.push(store.removeUser(p.user, p.server));
    };
    const hooks = [
      { hook: 'user_removed', host: '*', priority: PRIORITY, handler: onRemoved, owner: 'mod_roster' },
    ] satisfies [HookRegistration<'user_removed'>];
    return { backend: opts.backend, store, hooks: () => hooks };
  },
  create(ctx, opts, data) {
    const roster = data.store;
    roster.logger = ctx.logger;
    return {
      iqHandlers: () => [
        {
          xmlns: NS_ROSTER,
          scope: 'user',
          handler: async (req) => {
            // §2.1.5 / §2.3.3: only the user may read or change their roster.
            if (req.to.bare !== req.from.bare) throw new StanzaError('forbidden', 'auth');
            const user = req.from;
            if (req.type === 'get') {
              const items = await roster.getRoster(user.local, user.domain);
              const q = new Element('query', { xmlns: NS_ROSTER });
              for (const item of items) {
                // A contact who only asked to subscribe is not on the roster yet (§3.1.3).
                if (item.subscription === 'none' && item.ask === null && item.pendingIn && item.name === null && item.groups.length === 0) continue;
                q.children.push(itemElement(item));
              }
              return q;
            }
            const items = req.payload.getChildren('item');
            if (items.length !== 1) throw new StanzaError('bad-request', 'modify', 'a roster set carries exactly one item');
            const el = items[0]!;
            const contact = tryParseJid(el.attrs.jid ?? '');
            if (contact === null) throw new StanzaError('bad-request', 'modify', 'the item has no valid jid');
            const bare = contact.bare;
            const existing = await roster.getItem(user.local, user.domain, bare);
            if (el.attrs.subscription === 'remove') {
              if (existing === null) throw new StanzaError('item-not-found', 'cancel');
              await roster.removeItem(user.local, user.domain, bare);
              // §2.5.2: cancel both directions of the subscription.
              if (existing.subscription === 'to' || existing.subscription === 'both' || existing.ask === 'subscribe') {
                ctx.router.route(user.bareJid(), contact.bareJid(), new Element('presence', { type: 'unsubscribe', from: user.bare, to: bare }));
              }
              if (existing.subscription === 'from' || existing.subscription === 'both') {
                ctx.router.route(user.bareJid(), contact.bareJid(), new Element('presence', { type: 'unsubscribed', from: user.bare, to: bare }));
              }
              pushRosterItem(ctx.sessions, user.bare, { jid: bare, subscription: 'remove' });
              return undefined;
            }
            const groups = el.getChildren('group').map((g) => g.text());
            const name = el.attrs.name ?? null;
            checkItemLimits(name, groups, opts);
            if (new Set(groups).size !== groups.length) throw new StanzaError('bad-request', 'modify', 'duplicate group');
            if (groups.some((g) => g === '')) throw new StanzaError('not-acceptable', 'modify', 'empty group name');
            const next: RosterItem = {
              jid: bare,
              name,
              groups,
              subscription: existing?.subscription ?? 'none',
              ask: existing?.ask ?? null,
              pendingIn: existing?.pendingIn ?? false,
            };
            await roster.setItem(user.local, user.domain, next);
            pushRosterItem(ctx.sessions, user.bare, next);
            return undefined;
          },
        },
      ],
    };
  },
};
