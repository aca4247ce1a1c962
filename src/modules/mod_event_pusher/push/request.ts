// Reading XEP-0357 enable and disable requests (§5, §6) as
// mod_event_pusher_push:parse_request/1 reads them:
//   <enable jid='...' node='...'> [<x xmlns='jabber:x:data' type='submit'> publish-options </x>]
//   <disable jid='...' [node='...']/>
// Bad request: another element, a missing or unparsable `jid` or one without
// a domain, a missing or empty `node` on enable, an empty `node` on disable,
// and a form that is not a submitted
// http://jabber.org/protocol/pubsub#publish-options form (exactly one
// FORM_TYPE value) whose every field has exactly one value.
import { tryParseJid, type JID } from '../../../xmpp/jid.ts';
import { NS_XDATA } from '../../../xmpp/ns.ts';
import type { Element } from '../../../xmpp/xml.ts';

export const NS_PUBSUB_PUBLISH_OPTIONS = 'http://jabber.org/protocol/pubsub#publish-options';

export type PushRequest =
  | { kind: 'enable'; pubsub: JID; node: string; form: Record<string, string> }
  | { kind: 'disable'; pubsub: JID; node: string | undefined }
  | { kind: 'bad_request'; text: string };

function bad(text: string): PushRequest {
  return { kind: 'bad_request', text };
}

function pubsubJid(el: Element): JID | string {
  const s = el.attrs.jid;
  if (s === undefined || s === '') return 'the jid attribute is missing';
  const j = tryParseJid(s);
  if (j === null || j.domain === '') return 'the jid attribute is not a valid JID';
  return j.bareJid();
}

/** The fields of a publish-options form (FORM_TYPE left out), or why it is refused. */
export function parsePublishOptions(x: Element): Record<string, string> | string {
  if (x.attrs.type !== 'submit') return 'the publish-options form must be of type "submit"';
  const kvs = new Map<string, string[]>();
  for (const f of x.getChildren('field')) {
    const v = f.attrs.var;
    if (v === undefined) continue;
    kvs.set(v, f.getChildren('value').map((e) => e.text()));
  }
  const ft = kvs.get('FORM_TYPE');
  kvs.delete('FORM_TYPE');
  if (ft === undefined || ft.length !== 1 || ft[0] !== NS_PUBSUB_PUBLISH_OPTIONS) return `the form's FORM_TYPE must be ${NS_PUBSUB_PUBLISH_OPTIONS}`;
  const out: Record<string, string> = {};
  for (const [k, vs] of kvs) {
    if (vs.length !== 1) return `the publish-option ${JSON.stringify(k)} must have exactly one value`;
    out[k] = vs[0]!;
  }
  return out;
}

export function parsePushRequest(el: Element): PushRequest {
  if (el.name === 'enable') {
    const j = pubsubJid(el);
    if (typeof j === 'string') return bad(j);
    const node = el.attrs.node;
    if (node === undefined || node === '') return bad('the node attribute is missing or empty');
    const x = el.getChild('x', NS_XDATA);
    let form: Record<string, string> = {};
    if (x !== undefined) {
      const f = parsePublishOptions(x);
      if (typeof f === 'string') return bad(f);
      form = f;
    }
    return { kind: 'enable', pubsub: j, node, form };
  }
  if (el.name === 'disable') {
    const j = pubsubJid(el);
    if (typeof j === 'string') return bad(j);
    const node = el.attrs.node;
    if (node === '') return bad('the node attribute is empty');
    return { kind: 'disable', pubsub: j, node };
  }
  return bad(`expected <enable/> or <disable/>, got <${el.name}/>`);
}
