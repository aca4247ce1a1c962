// Configuration of the RabbitMQ backend: [modules.mod_event_pusher.rabbit]
// (MongooseIM's spelling; `backend.rabbit` is accepted too). Names and
// defaults are mod_event_pusher_rabbit:config_spec/0's. Only the exchanges
// configured are declared and receive events: a table left out switches its
// kind of event off, and an empty one (`[...rabbit.presence_exchange]`)
// switches it on with the defaults.
import { bool, fail, section, str, type Spec } from '../../../config/schema.ts';

/** The pool the backend publishes through, as in MongooseIM (its POOL_TAG). */
export const RABBIT_POOL_TAG = 'event_pusher';

export interface ExchangeOpts {
  name: string;
  type: string;
  durable: boolean;
}

export interface MsgExchangeOpts extends ExchangeOpts {
  sent_topic: string;
  recv_topic: string;
}

export interface RabbitOpts {
  presence_exchange?: ExchangeOpts;
  chat_msg_exchange?: MsgExchangeOpts;
  groupchat_msg_exchange?: MsgExchangeOpts;
  /** Where it was configured, for errors found at start. */
  tomlPath: string;
}

/** AMQP short strings (exchange names) are at most 255 bytes. */
const shortstr = (v: string): string | undefined =>
  Buffer.byteLength(v) > 255 ? `is ${Buffer.byteLength(v)} bytes long; AMQP allows at most 255` : undefined;

function exchangeItems(name: string): Record<string, Spec> {
  return {
    name: str({ nonEmpty: true, default: name, check: shortstr }),
    type: str({ nonEmpty: true, default: 'topic' }),
    durable: bool({ default: false }),
  };
}

function msgExchange(name: string): Spec {
  return section({
    ...exchangeItems(name),
    sent_topic: str({ nonEmpty: true, default: `${name}_sent` }),
    recv_topic: str({ nonEmpty: true, default: `${name}_recv` }),
  });
}

export const rabbitSpec: Spec = section(
  {
    presence_exchange: section(exchangeItems('presence')),
    chat_msg_exchange: msgExchange('chat_msg'),
    groupchat_msg_exchange: msgExchange('groupchat_msg'),
  },
  {
    process: (v, p) => {
      // One name is one exchange on the broker: declared twice differently, the second declaration fails.
      const seen = new Map<string, { key: string; type: string; durable: boolean }>();
      for (const key of ['presence_exchange', 'chat_msg_exchange', 'groupchat_msg_exchange']) {
        const x = v[key] as ExchangeOpts | undefined;
        if (x === undefined) continue;
        const prev = seen.get(x.name);
        if (prev !== undefined && (prev.type !== x.type || prev.durable !== x.durable)) {
          fail(`${p}.${key}.name`, `exchange ${JSON.stringify(x.name)} is also ${p}.${prev.key}.name with another type or durability`);
        }
        seen.set(x.name, { key, type: x.type, durable: x.durable });
      }
      return { ...v, tomlPath: p };
    },
  },
);

/** Both spellings together: the module's table wins over `backend.rabbit` for the exchanges it sets. */
export function combineRabbit(fromBackend: unknown, fromModule: unknown): RabbitOpts | undefined {
  if (fromBackend === undefined && fromModule === undefined) return undefined;
  const a = (fromBackend ?? {}) as RabbitOpts;
  const b = (fromModule ?? {}) as RabbitOpts;
  return { ...a, ...b, tomlPath: b.tomlPath ?? a.tomlPath };
}

/** The exchanges to declare, each once. */
export function configuredExchanges(o: RabbitOpts): ExchangeOpts[] {
  const out = new Map<string, ExchangeOpts>();
  for (const x of [o.presence_exchange, o.chat_msg_exchange, o.groupchat_msg_exchange]) {
    if (x !== undefined && !out.has(x.name)) out.set(x.name, { name: x.name, type: x.type, durable: x.durable });
  }
  return [...out.values()];
}
