// XEP-0030 Service Discovery for the served domains: who the server is
// (identity) and what it supports (the features other modules put into
// ctx.features). The server has no items of its own to list.
import { bool, compat, section } from '../config/schema.ts';
import { StanzaError } from '../xmpp/errors.ts';
import { NS_DISCO_INFO, NS_DISCO_ITEMS } from '../xmpp/ns.ts';
import { Element } from '../xmpp/xml.ts';
import type { IqRequest, ModuleDefinition, ModuleInstance } from './types.ts';

export type DiscoOpts = Record<string, never>;

/**
 * The disco#info payload of a served domain (XEP-0030 §3.1). The identity is
 * category "server", type "im" from the Service Discovery Identities registry.
 * Features are sorted and unique so that the answer, and any entity
 * capabilities hash computed over it (XEP-0115 §5.1), is stable.
 */
export function discoInfo(features: Iterable<string>): Element {
  const query = new Element('query', { xmlns: NS_DISCO_INFO });
  query.c('identity', { category: 'server', type: 'im', name: 'Petrel' });
  const all = new Set<string>([NS_DISCO_INFO, NS_DISCO_ITEMS]);
  for (const f of features) all.add(f);
  for (const f of [...all].sort()) query.c('feature', { var: f });
  return query;
}

/** The disco#items payload of a served domain: no items (XEP-0030 §4.2). */
export function discoItems(): Element {
  return new Element('query', { xmlns: NS_DISCO_ITEMS });
}

/**
 * Disco requests are "get" only (XEP-0030 §3.1, §4.1). The server has no
 * nodes, so a request naming one is answered with item-not-found (§3.2, §4.2).
 */
function checkRequest(req: IqRequest): void {
  if (req.type !== 'get') throw new StanzaError('bad-request', 'modify');
  if (req.payload.attrs.node !== undefined) throw new StanzaError('item-not-found', 'cancel');
}

export const definition: ModuleDefinition<DiscoOpts> = {
  name: 'mod_disco',
  configSpec: section(
    { users_can_see_hidden_services: compat(bool({ default: true }), 'Petrel lists no hidden services') },
    { default: true },
  ),
  create(ctx): ModuleInstance {
    return {
      iqHandlers: () => [
        {
          xmlns: NS_DISCO_INFO,
          scope: 'server',
          // Read at each request: modules may announce features after this one starts.
          handler: (req) => {
            checkRequest(req);
            return discoInfo(ctx.features);
          },
        },
        {
          xmlns: NS_DISCO_ITEMS,
          scope: 'server',
          handler: (req) => {
            checkRequest(req);
            return discoItems();
          },
        },
      ],
    };
  },
};
