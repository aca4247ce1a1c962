// Types for users' callback modules and other code written against Petrel:
//   import type { CallbackModule, ShouldMakeReqArgs, PrepareArgs } from 'petrel';
export type {
  CallbackModule,
  HttpHandlerOpts,
  HttpHeaderList,
  PrepareArgs,
  ShouldMakeReqArgs,
} from './modules/mod_event_pusher/http/callback.ts';
export type { JsonChatPayload } from './modules/mod_event_pusher/http/json.ts';
export type { Acc, ChatEvent, Direction, PresenceEvent, PushEvent } from './hooks/catalogue.ts';
export type { Element, Node } from './xmpp/xml.ts';
export type { JID } from './xmpp/jid.ts';
