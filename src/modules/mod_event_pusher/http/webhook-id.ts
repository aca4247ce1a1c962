// The `webhook-id` header (Standard Webhooks, "webhook-id"): one value per
// event, allocated by the server when the event is taken, and stored with it
// (the outbox row's event id), so that every attempt of that event, before
// and after a restart, carries the same value, and a receiver can drop a
// repeat by it.
//
// It is never derived from what a client chose: two messages with the same
// stanza `id`, sender, recipient and body are two events and get two ids. An
// id is a random 96-bit prefix drawn once per process (and again when its
// counter wraps) followed by a counter, in base64url: unique across restarts
// and across servers sharing one outbox, with no random draw per event.
import { randomBytes } from 'node:crypto';

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
/** Six base64url digits of counter after the 16 of the prefix: `msg_` and 22 characters, as before. */
const COUNTER_DIGITS = 6;
const COUNTER_SPAN = 64 ** COUNTER_DIGITS;

let prefix = '';
let counter = COUNTER_SPAN;

/** A new event id: `msg_` followed by 22 base64url characters, never handed out before. */
export function newWebhookId(): string {
  if (counter >= COUNTER_SPAN) {
    prefix = 'msg_' + randomBytes(12).toString('base64url');
    counter = 0;
  }
  let n = counter++;
  let digits = '';
  for (let i = 0; i < COUNTER_DIGITS; i++) {
    digits = B64URL[n % 64]! + digits;
    n = Math.floor(n / 64);
  }
  return prefix + digits;
}
