// What the RabbitMQ backend stores in the outbox for one event: the exchange,
// the routing key and the JSON body, so that the sender needs nothing else
// (and a configuration change does not re-route events already stored).
//
//   u16 exchange length | exchange (UTF-8) | u16 routing key length | routing key | body
const enc = new TextEncoder();
const dec = new TextDecoder();

/** AMQP 0-9-1 short strings (exchange names, routing keys) are at most 255 bytes. */
export const MAX_SHORTSTR = 255;

export interface RabbitMessage {
  exchange: string;
  routingKey: string;
  body: Uint8Array;
}

export function encodeRabbitPayload(exchange: string, routingKey: string, body: string): Uint8Array {
  const ex = enc.encode(exchange);
  const key = enc.encode(routingKey);
  const b = enc.encode(body);
  // Lengths up to 65535 are kept as they are, so a key too long for AMQP is told apart when it is sent.
  if (ex.length > 0xffff || key.length > 0xffff) throw new RangeError('exchange name or routing key longer than 65535 bytes');
  const out = new Uint8Array(4 + ex.length + key.length + b.length);
  const view = new DataView(out.buffer);
  view.setUint16(0, ex.length);
  out.set(ex, 2);
  view.setUint16(2 + ex.length, key.length);
  out.set(key, 4 + ex.length);
  out.set(b, 4 + ex.length + key.length);
  return out;
}

export function decodeRabbitPayload(p: Uint8Array): RabbitMessage {
  const view = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const exLen = view.getUint16(0);
  const exchange = dec.decode(p.subarray(2, 2 + exLen));
  const keyLen = view.getUint16(2 + exLen);
  const routingKey = dec.decode(p.subarray(4 + exLen, 4 + exLen + keyLen));
  return { exchange, routingKey, body: p.subarray(4 + exLen + keyLen) };
}
