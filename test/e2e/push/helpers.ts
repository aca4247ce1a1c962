// Shared pieces of the XEP-0357 push tests: the configuration of the push
// backend and mod_push_service_mongoosepush pointed at a test MongoosePush
// (a real node:http listener, delivery/helpers.ts Webhook), and the enable /
// disable IQs a client sends.
import { xml, type XmlElement } from '../helpers/client.ts';
import { poolToml } from '../delivery/helpers.ts';

export const NS_PUSH = 'urn:xmpp:push:0';
export const NS_XDATA = 'jabber:x:data';
export const PUBLISH_OPTIONS = 'http://jabber.org/protocol/pubsub#publish-options';

export interface PushToml {
  port: number;
  backend?: 'internal' | 'rdbms';
  plugin?: string;
  extra?: string;
}

export function pushToml(o: PushToml): string {
  return `
${poolToml('mongoose_push_http', o.port)}
[modules.mod_event_pusher.push]
  backend = "${o.backend ?? 'internal'}"
  plugin_module = "${o.plugin ?? 'mod_event_pusher_push_plugin_defaults'}"
  virtual_pubsub_hosts = ["pubsub.@HOSTS@"]
  wpool.workers = 20
${o.extra ?? ''}
[modules.mod_push_service_mongoosepush]
  pool_name = "mongoose_push_http"
  api_version = "v3"
  max_http_connections = 10
  [modules.mod_push_service_mongoosepush.retry]
    max_attempts = 1000
    initial_delay = 20
    max_delay = 200
`;
}

/** A submitted publish-options form with these fields (values: one each, or a list). */
export function publishOptions(fields: Record<string, string | string[]>, o: { type?: string; formType?: string | null } = {}): XmlElement {
  const children: XmlElement[] = [];
  if (o.formType !== null) children.push(xml('field', { var: 'FORM_TYPE' }, xml('value', {}, o.formType ?? PUBLISH_OPTIONS)));
  for (const [k, v] of Object.entries(fields)) {
    children.push(xml('field', { var: k }, ...(Array.isArray(v) ? v : [v]).map((x) => xml('value', {}, x))));
  }
  return xml('x', { xmlns: NS_XDATA, type: o.type ?? 'submit' }, ...children);
}

export function enableIq(attrs: { jid?: string; node?: string }, form?: XmlElement, to?: string): XmlElement {
  return xml('iq', { type: 'set', ...(to !== undefined ? { to } : {}) }, xml('enable', { xmlns: NS_PUSH, ...attrs }, form ?? null));
}

export function disableIq(attrs: { jid?: string; node?: string }): XmlElement {
  return xml('iq', { type: 'set' }, xml('disable', { xmlns: NS_PUSH, ...attrs }));
}
