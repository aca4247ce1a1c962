// mod_event_pusher_http_defaults: MongooseIM's default callback module.
// Pushes chat messages with a non-empty body that a user sent (dir "in");
// groupchat, headline and normal messages and the "out" direction are not
// pushed (mod_event_pusher_http_defaults:should_make_req/6).
import type { CallbackModule, HttpHeaderList, PrepareArgs, ShouldMakeReqArgs } from './callback.ts';
import { formBody } from './form.ts';

const HEADERS: HttpHeaderList = [['content-type', 'application/x-www-form-urlencoded']];

export function shouldMakeReq(a: ShouldMakeReqArgs): boolean {
  if (a.dir !== 'in') return false;
  if (a.packet.attrs.type !== 'chat') return false;
  const body = a.packet.getChild('body');
  return body !== undefined && body.text() !== '';
}

export function prepareHeaders(_a: PrepareArgs): HttpHeaderList {
  return HEADERS;
}

/** author=<sender>&server=<host>&receiver=<receiver>&message=<body>, in that order. */
export function prepareBody(a: PrepareArgs): string {
  return formBody([
    ['author', a.sender],
    ['server', a.host],
    ['receiver', a.receiver],
    ['message', a.message],
  ]);
}

export const defaults: CallbackModule = { shouldMakeReq, prepareHeaders, prepareBody };
