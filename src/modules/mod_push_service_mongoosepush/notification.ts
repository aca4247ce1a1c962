// What mod_push_service_mongoosepush sends MongoosePush for one
// notification (mod_push_service_mongoosepush:make_notification/2):
//
//   POST <api_version>/notification/<device_id>     content-type: application/json
//   { "service": <service>,                          required publish-option
//     "mode", "priority", "topic", "mutable_content", "time_to_live"
//                                                    publish-options copied as given (strings)
//     "alert": { "body":  <last-message-body>,
//                "title": <last-message-sender>,
//                "tag":   <last-message-sender>,
//                "badge": <message-count, a number>,
//                "click_action", "sound" }          the last two when given as publish-options
//   }
// or, when the publish-option `silent` is "true", instead of "alert":
//   "data": { "message-count": <number>, "last-message-sender", "last-message-body" }
//
// `tags` is never copied (MongooseIM leaves it out so that a client cannot
// pick a MongoosePush pool other than prod and dev through `mode`).
// MongooseIM puts the device id in the path as it is; Petrel percent-encodes
// it (RFC 3986 §3.3), so that a token holding "/" or "?" cannot reach
// another path.

/** The summary form fields of one notification (XEP-0357 §7, urn:xmpp:push:summary). */
export interface Summary {
  'message-count': string;
  'last-message-sender': string;
  'last-message-body': string;
}

const OPTIONAL_KEYS = ['mode', 'priority', 'topic', 'mutable_content', 'time_to_live'] as const;
const OPTIONAL_ALERT_KEYS = ['click_action', 'sound'] as const;

export type Built = { ok: true; path: string; body: string } | { ok: false; error: string };

/** MongooseIM's normalize_notification/1: message-count as a number. */
function count(s: string): number | string {
  return /^-?\d+$/.test(s) ? Number(s) : s;
}

/** The request for one notification, or why there is none (no device_id or no service among the publish-options). */
export function buildNotification(apiVersion: string, summary: Summary, options: Readonly<Record<string, string>>): Built {
  const deviceId = options.device_id;
  if (deviceId === undefined) return { ok: false, error: 'the publish-options carry no device_id' };
  const service = options.service;
  if (service === undefined) return { ok: false, error: 'the publish-options carry no service' };
  const json: Record<string, unknown> = { service };
  for (const k of OPTIONAL_KEYS) if (Object.hasOwn(options, k)) json[k] = options[k];
  const badge = count(summary['message-count']);
  if (options.silent === 'true') {
    json.data = { 'message-count': badge, 'last-message-sender': summary['last-message-sender'], 'last-message-body': summary['last-message-body'] };
  } else {
    const alert: Record<string, unknown> = {
      body: summary['last-message-body'],
      title: summary['last-message-sender'],
      tag: summary['last-message-sender'],
      badge,
    };
    for (const k of OPTIONAL_ALERT_KEYS) if (Object.hasOwn(options, k)) alert[k] = options[k];
    json.alert = alert;
  }
  return { ok: true, path: `${apiVersion}/notification/${encodeURIComponent(deviceId)}`, body: JSON.stringify(json) };
}
