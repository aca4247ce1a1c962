// Roster items as XML (RFC 6121 §2.1.2) and roster pushes (§2.1.6).
import { Element } from '../xmpp/xml.ts';
import { NS_ROSTER } from '../xmpp/ns.ts';
import type { RosterItem, SessionsApi } from './types.ts';

export function itemElement(item: RosterItem | { jid: string; subscription: 'remove' }): Element {
  const el = new Element('item', { jid: item.jid, subscription: item.subscription });
  if ('ask' in item) {
    if (item.ask !== null) el.attrs.ask = item.ask;
    if (item.name !== null && item.name !== '') el.attrs.name = item.name;
    for (const g of item.groups) el.c('group').t(g);
  }
  return el;
}

let pushCounter = 0;

/** Sends a roster push to every interested resource of the user. */
export function pushRosterItem(sessions: SessionsApi, bare: string, item: RosterItem | { jid: string; subscription: 'remove' }): void {
  for (const s of sessions.byBare(bare)) {
    if (!s.interested) continue;
    const iq = new Element('iq', { type: 'set', id: 'push' + (++pushCounter).toString(36), to: s.jid.full });
    iq.c('query', { xmlns: NS_ROSTER }).children.push(itemElement(item));
    s.send(iq);
  }
}
