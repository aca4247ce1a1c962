// The `webhook-id` header (Standard Webhooks, "webhook-id"): the same event
// delivered twice carries the same id, so a receiver can drop the repeat.
// It is derived from what identifies one event for one handler: the stanza's
// sender and recipient, its id (RFC 6120 §8.1.3; the server's own reference
// of the stanza when the client gave none), the handler and the direction.
// The recipient is part of it because a groupchat message fans out to many
// recipients under one stanza id.
import { hash } from 'node:crypto';

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

export function webhookId(from: string, to: string, stanzaId: string, handler: number, dir: string): string {
  // 128 bits are plenty against collisions; base64url keeps the header token-safe.
  // The id is the first 16 bytes of the SHA-256 in base64url: 21 characters
  // carry bits 0-125, and the 22nd holds bits 126-127 followed by four zero
  // bits (as the encoding of the 16 bytes alone would), so ids stay what
  // earlier versions derived for the same event.
  const full = hash('sha256', from + '\n' + to + '\n' + stanzaId + '\n' + handler + '\n' + dir, 'base64url');
  return 'msg_' + full.slice(0, 21) + B64URL[B64URL.indexOf(full[21]!) & 0x30];
}
