// mod_event_pusher_http_json: a JSON alternative to the form-encoded default.
// Pushes every chat event (chat, groupchat, headline, normal) whose body is
// not empty, in both directions: "in" when a user sends it, "out" when it is
// about to reach a local user. A groupchat event also names the room and the
// occupant: "out" events come from the room (room@service/nick for XEP-0045,
// room@service/user@host for MUC Light), one per recipient; "in" events are
// addressed to the room, whose occupant name for the sender the server has
// not chosen yet (null).
import type { CallbackModule, HttpHeaderList, PrepareArgs, ShouldMakeReqArgs } from './callback.ts';

const HEADERS: HttpHeaderList = [['content-type', 'application/json']];

export interface JsonChatPayload {
  type: 'chat_message';
  /** ISO-8601 (UTC, milliseconds) time at which the server received the stanza. */
  timestamp: string;
  data: {
    author: string;
    server: string;
    receiver: string;
    message: string;
    direction: 'in' | 'out';
    /** Full JIDs as on the stanza. */
    from: string;
    to: string;
    /** chat | groupchat | headline | normal */
    message_type: string;
    /** The stanza's id attribute, null when it has none. */
    stanza_id: string | null;
    /** groupchat only: the room's bare JID. */
    room?: string;
    /** groupchat only: who spoke in the room (a nickname, or a MUC Light member's JID); null on the "in" side. */
    occupant?: string | null;
  };
}

export function shouldMakeReq(a: ShouldMakeReqArgs): boolean {
  const body = a.packet.getChild('body');
  return body !== undefined && body.text() !== '';
}

export function prepareHeaders(_a: PrepareArgs): HttpHeaderList {
  return HEADERS;
}

export function prepareBody(a: PrepareArgs): string {
  const el = a.acc.element;
  const payload: JsonChatPayload = {
    type: 'chat_message',
    timestamp: new Date(a.acc.timestamp).toISOString(),
    data: {
      author: a.sender,
      server: a.host,
      receiver: a.receiver,
      message: a.message,
      direction: a.dir,
      from: a.acc.from.full,
      to: a.acc.to.full,
      message_type: el.attrs.type ?? 'normal',
      stanza_id: el.attrs.id ?? null,
    },
  };
  if (payload.data.message_type === 'groupchat') {
    const room = a.dir === 'in' ? a.acc.to : a.acc.from;
    payload.data.room = room.bare;
    payload.data.occupant = a.dir === 'in' || room.resource === '' ? null : room.resource;
  }
  return JSON.stringify(payload);
}

export const json: CallbackModule = { shouldMakeReq, prepareHeaders, prepareBody };
