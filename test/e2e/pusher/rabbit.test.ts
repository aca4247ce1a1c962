// mod_event_pusher's RabbitMQ backend against this machine's real RabbitMQ
// (127.0.0.1:5672, guest/guest): what a consumer bound to the exchanges
// receives, and that a broker restart in the middle of a burst loses nothing.
// Skipped, with a message, when no broker answers.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { connect as netConnect } from 'node:net';
import { randomBytes } from 'node:crypto';
import { connect as amqpConnect, type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { rm } from 'node:fs/promises';
import { freePort, preparePetrel, startPetrel, type Petrel } from '../helpers/server.ts';
import { connect, isMessage, xml } from '../helpers/client.ts';
import { prometheusToml, sampleValue, scrape, waitForSample } from './helpers.ts';

const AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672';

function brokerUp(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ host: '127.0.0.1', port: 5672 });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

const available = await brokerUp();
if (!available) console.log('# RabbitMQ is not running on 127.0.0.1:5672: the mod_event_pusher_rabbit tests are skipped');

function rabbitmqctl(...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('rabbitmqctl', args, { timeout: 60_000 }, (err, stdout, stderr) => (err ? reject(new Error(`rabbitmqctl ${args.join(' ')}: ${stderr || err.message}`)) : resolve(stdout)));
  });
}

/** A consumer of everything published to some exchanges, through a queue of its own. */
class Consumer {
  readonly got: ConsumeMessage[] = [];
  #model: ChannelModel | null = null;
  #ch: Channel | null = null;
  readonly queue: string;
  readonly durable: boolean;
  readonly exchanges: Array<{ name: string; type: string; durable: boolean }>;

  /** Binding keys: '#' (everything) suits topic exchanges; a direct exchange needs the exact routing keys. */
  readonly keys: string[];

  constructor(exchanges: Array<{ name: string; type: string; durable: boolean }>, durable: boolean, keys = ['#']) {
    this.exchanges = exchanges;
    this.durable = durable;
    this.keys = keys;
    this.queue = `petrel-test-${randomBytes(4).toString('hex')}`;
  }

  async open(): Promise<void> {
    const m = await amqpConnect(AMQP_URL);
    m.on('error', () => {});
    const ch = await m.createChannel();
    ch.on('error', () => {});
    // Declared as the server declares them (same type and durability): whoever comes first creates them.
    for (const x of this.exchanges) await ch.assertExchange(x.name, x.type, { durable: x.durable });
    await ch.assertQueue(this.queue, { durable: this.durable, autoDelete: false });
    for (const x of this.exchanges) for (const k of this.keys) await ch.bindQueue(this.queue, x.name, k);
    await ch.consume(this.queue, (msg) => {
      if (msg === null) return;
      this.got.push(msg);
      ch.ack(msg);
    });
    this.#model = m;
    this.#ch = ch;
  }

  async until(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`no ${what} within ${timeoutMs} ms; got ${this.got.length} messages`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  byKey(key: string): string[] {
    return this.got.filter((m) => m.fields.routingKey === key).map((m) => m.content.toString('utf8'));
  }

  async close(deleteQueue = true): Promise<void> {
    try {
      if (deleteQueue) await this.#ch?.deleteQueue(this.queue);
      await this.#model?.close();
    } catch {
      // The broker went away under it.
    }
    this.#model = null;
    this.#ch = null;
  }
}

function suffix(): string {
  return randomBytes(4).toString('hex');
}

test('a rabbit backend without the event_pusher pool is refused at start, naming its table', async () => {
  const r = await startPetrel({ extraToml: '[modules.mod_event_pusher.rabbit.presence_exchange]\n' }).then(
    async (p) => {
      await p.dispose();
      return 'started';
    },
    (e: Error) => e.message,
  );
  assert.match(r, /modules\.mod_event_pusher\.rabbit.*outgoing_pools\.rabbit\.event_pusher/s);
});

test('check-config refuses a rabbit backend without the event_pusher pool, as start does', async () => {
  const p = await preparePetrel({ extraToml: '[modules.mod_event_pusher.rabbit.presence_exchange]\n' });
  try {
    const r = await p.cli(['check-config']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /modules\.mod_event_pusher\.rabbit: needs the RabbitMQ pool \[outgoing_pools\.rabbit\.event_pusher\]/);
  } finally {
    await rm(p.dir, { recursive: true, force: true });
  }
});

describe('mod_event_pusher_rabbit', { skip: available ? false : 'RabbitMQ is not running on 127.0.0.1:5672' }, () => {
  describe('payloads and routing keys', () => {
    const presenceEx = `petrel_presence_${suffix()}`;
    const chatEx = `petrel_chat_${suffix()}`;
    const groupEx = `petrel_groupchat_${suffix()}`;
    let server: Petrel;
    let metricsPort: number;
    const consumer = new Consumer([
      { name: presenceEx, type: 'topic', durable: false },
      { name: chatEx, type: 'topic', durable: false },
      { name: groupEx, type: 'topic', durable: false },
    ], false);

    before(async () => {
      await consumer.open();
      metricsPort = await freePort();
      server = await startPetrel({
        users: [['alice', 'pw'], ['bob', 'pw']],
        extraToml: `${prometheusToml(metricsPort)}
[outgoing_pools.rabbit.event_pusher]
  workers = 4
  [outgoing_pools.rabbit.event_pusher.connection]
    host = "127.0.0.1"

[modules.mod_event_pusher.rabbit]
  presence_exchange.name = "${presenceEx}"
  chat_msg_exchange.name = "${chatEx}"
  chat_msg_exchange.sent_topic = "sent_here"
  groupchat_msg_exchange.name = "${groupEx}"

[modules.mod_muc]
`,
      });
    });

    after(async () => {
      await server?.dispose();
      await consumer.close();
    });

    test('presence, sent and received chat messages arrive as MongooseIM publishes them, with a message id and persistent', async () => {
      const alice = await connect({ port: server.port }, 'alice', 'pw');
      const bob = await connect({ port: server.port }, 'bob', 'pw');
      try {
        await bob.available();
        await alice.available();
        await consumer.until(() => consumer.byKey('alice@localhost').length >= 1, 10_000, 'presence event');
        assert.deepEqual(consumer.byKey('alice@localhost'), [`{"present":true,"user_id":"${alice.jid}"}`]);

        const id = await alice.message(bob.bare, 'Hello, "Bob" \\ /ü');
        await bob.waitFor(isMessage(id));
        await consumer.until(() => consumer.byKey('bob@localhost.chat_msg_recv').length >= 1, 10_000, 'received event');
        await consumer.until(() => consumer.byKey('alice@localhost.sent_here').length >= 1, 10_000, 'sent event');
        assert.deepEqual(consumer.byKey('alice@localhost.sent_here'), [
          `{"from_user_id":"${alice.jid}","message":"Hello, \\"Bob\\" \\\\ /ü","to_user_id":"bob@localhost"}`,
        ]);
        assert.deepEqual(consumer.byKey('bob@localhost.chat_msg_recv'), [
          `{"from_user_id":"${alice.jid}","message":"Hello, \\"Bob\\" \\\\ /ü","to_user_id":"${bob.jid}"}`,
        ]);
        for (const m of consumer.got) {
          assert.equal(m.properties.deliveryMode, 2, 'published persistent');
          assert.match(String(m.properties.messageId), /^[0-9a-f-]{36}$/);
        }
        const ids = consumer.got.map((m) => m.properties.messageId);
        assert.equal(new Set(ids).size, ids.length, 'every event has its own message id');

        // A chat state without a body, and a groupchat message (its exchange is not configured), publish nothing.
        const before = consumer.got.filter((x) => x.fields.exchange === chatEx).length;
        await alice.send(xml('message', { to: bob.bare, type: 'chat', id: 'cs1' }, xml('composing', { xmlns: 'http://jabber.org/protocol/chatstates' })));
        const id2 = await alice.message(bob.bare, 'after the chat state');
        await bob.waitFor(isMessage(id2));
        const chatEvents = () => consumer.got.filter((x) => x.fields.exchange === chatEx).length;
        await consumer.until(() => chatEvents() >= before + 2, 10_000, 'events of the second message');
        await new Promise((r) => setTimeout(r, 300));
        assert.equal(chatEvents(), before + 2);

        // A room message: one "sent" event for the speaker, one "received" per occupant reached.
        const room = 'rabbitroom@conference.localhost';
        for (const [c, nick] of [[alice, 'Al'], [bob, 'Bo']] as const) {
          const joined = c.waitFor((el) => el.name === 'message' && el.attrs.from?.startsWith(room) === true && el.getChild('subject') !== undefined);
          await c.send(xml('presence', { to: `${room}/${nick}` }, xml('x', { xmlns: 'http://jabber.org/protocol/muc' })));
          await joined;
        }
        const heard = bob.waitFor((el) => el.name === 'message' && el.getChildText('body') === 'to the room');
        await alice.send(xml('message', { to: room, type: 'groupchat' }, xml('body', {}, 'to the room')));
        await heard;
        await consumer.until(() => consumer.byKey('bob@localhost.groupchat_msg_recv').length >= 1 && consumer.byKey('alice@localhost.groupchat_msg_recv').length >= 1, 10_000, 'groupchat events');
        assert.deepEqual(consumer.byKey('alice@localhost.groupchat_msg_sent'), [`{"from_user_id":"${alice.jid}","message":"to the room","to_user_id":"${room}"}`]);
        assert.deepEqual(consumer.byKey('bob@localhost.groupchat_msg_recv'), [`{"from_user_id":"${room}/Al","message":"to the room","to_user_id":"${bob.jid}"}`]);

        await alice.close();
        await consumer.until(() => consumer.byKey('alice@localhost').length >= 2, 10_000, 'unavailable presence event');
        assert.equal(consumer.byKey('alice@localhost')[1], `{"present":false,"user_id":"${alice.jid}"}`);

        const m = await scrape(metricsPort);
        assert.equal(sampleValue(m, 'wpool_global_rabbit_connections_active', { pool_tag: 'event_pusher' }), 1);
        assert.ok((sampleValue(m, 'wpool_global_rabbit_messages_published_count', { pool_tag: 'event_pusher' }) ?? 0) >= 5);
        assert.equal(sampleValue(m, 'wpool_global_rabbit_messages_published_failed', { pool_tag: 'event_pusher' }), 0);
      } finally {
        await alice.close();
        await bob.close();
      }
    });
  });

  describe('a broker restart in the middle of a burst, with publisher confirms', () => {
    const chatEx = `petrel_durable_chat_${suffix()}`;
    let server: Petrel;
    let metricsPort: number;
    const consumer = new Consumer([{ name: chatEx, type: 'topic', durable: true }], true);

    before(async () => {
      await consumer.open();
      metricsPort = await freePort();
      server = await startPetrel({
        users: [['carol', 'pw'], ['dave', 'pw']],
        extraToml: `${prometheusToml(metricsPort)}
[outgoing_pools.rabbit.event_pusher]
  workers = 8
  [outgoing_pools.rabbit.event_pusher.connection]
    host = "127.0.0.1"
    confirms_enabled = true
    reconnect.delay = 200

[modules.mod_event_pusher.rabbit]
  chat_msg_exchange.name = "${chatEx}"
  chat_msg_exchange.durable = true
`,
      });
    });

    after(async () => {
      await server?.dispose();
      await consumer.close();
      await rabbitmqctl('await_startup').catch(() => {});
    });

    test('every event of the burst reaches the broker: none lost, and the chat is never held up', async () => {
      const carol = await connect({ port: server.port }, 'carol', 'pw');
      const dave = await connect({ port: server.port }, 'dave', 'pw');
      const n = 300;
      const bodies: string[] = [];
      try {
        await dave.available();
        const send = async (from: number, to: number) => {
          for (let i = from; i < to; i++) {
            const body = `burst ${i}`;
            bodies.push(body);
            await carol.message(dave.bare, body);
          }
        };
        await send(0, 100);
        await consumer.until(() => consumer.got.length >= 1, 10_000, 'a first event');
        // The broker stops with events in flight; the consumer's durable queue keeps what was confirmed.
        await rabbitmqctl('stop_app');
        try {
          // While the broker is down, messages are still routed at once.
          await send(100, 200);
          for (let i = 0; i < 3; i++) {
            const id = await carol.message(dave.bare, `while down ${i}`);
            bodies.push(`while down ${i}`);
            await dave.waitFor(isMessage(id), 10_000, 'a message routed while the broker is down');
          }
        } finally {
          await rabbitmqctl('start_app');
          await rabbitmqctl('await_startup');
        }
        await consumer.close(false);
        await consumer.open();
        await send(200, n);
        const published = (key: string) => new Set(consumer.byKey(key).map((c) => JSON.parse(c).message as string));
        await consumer.until(() => {
          const s = published('carol@localhost.chat_msg_sent');
          return bodies.every((b) => s.has(b));
        }, 60_000, 'every sent event');
        await consumer.until(() => {
          const r = published('dave@localhost.chat_msg_recv');
          return bodies.every((b) => r.has(b));
        }, 60_000, 'every received event');
        const distinctIds = new Set(consumer.got.map((m) => m.properties.messageId));
        console.log(`# ${consumer.got.length} messages consumed for ${bodies.length * 2} events (${distinctIds.size} distinct message ids)`);
        await waitForSample(metricsPort, 'wpool_global_rabbit_connections_opened', { pool_tag: 'event_pusher' }, (v) => v >= 2);
      } finally {
        await carol.close();
        await dave.close();
      }
    });
  });

  test('with sender_thread = "main" and a direct exchange, events are published from the routing thread', async () => {
    const ex = `petrel_main_${suffix()}`;
    const consumer = new Consumer([{ name: ex, type: 'direct', durable: false }], false, ['erin@localhost.chat_msg_sent', 'frank@localhost.chat_msg_recv']);
    await consumer.open();
    const server = await startPetrel({
      users: [['erin', 'pw'], ['frank', 'pw']],
      extraToml: `[outgoing_pools.rabbit.event_pusher]
[modules.mod_event_pusher]
  sender_thread = "main"
[modules.mod_event_pusher.rabbit.chat_msg_exchange]
  name = "${ex}"
  type = "direct"
`,
    });
    try {
      const erin = await connect({ port: server.port }, 'erin', 'pw');
      const frank = await connect({ port: server.port }, 'frank', 'pw');
      await frank.available();
      const id = await erin.message(frank.bare, 'from the main thread');
      await frank.waitFor(isMessage(id));
      await consumer.until(() => consumer.got.length >= 2, 10_000, 'both events');
      assert.deepEqual(consumer.got.map((m) => m.fields.routingKey).sort(), ['erin@localhost.chat_msg_sent', 'frank@localhost.chat_msg_recv']);
      await erin.close();
      await frank.close();
    } finally {
      await server.dispose();
      await consumer.close();
    }
  });
});
