// The `webhook-id` header (Standard Webhooks, "webhook-id"): the same event
// delivered twice carries the same id, so a receiver can drop the repeat.
// It is derived from what identifies one event for one handler: the stanza's
// sender and recipient, its id (RFC 6120 §8.1.3; the server's own reference
// of the stanza when the client gave none), the handler and the direction.
// The recipient is part of it because a groupchat message fans out to many
// recipients under one stanza id.
import { createHash } from 'node:crypto';

export function webhookId(from: string, to: string, stanzaId: string, handler: number, dir: string): string {
  const h = createHash('sha256');
  h.update(from).update('\n').update(to).update('\n').update(stanzaId).update('\n').update(String(handler)).update('\n').update(dir);
  // 128 bits are plenty against collisions; base64url keeps the header token-safe.
  return 'msg_' + h.digest().subarray(0, 16).toString('base64url');
}
