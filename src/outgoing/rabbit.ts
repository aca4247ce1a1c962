// A connection to RabbitMQ for one [outgoing_pools.rabbit.TAG] pool, built on
// amqplib. It is opened by whoever publishes (the event pusher's sender, in
// the sender thread by default) and kept open: when it drops, it is opened
// again every `reconnect.delay` ms for as long as it takes, and the
// exchanges it was given are declared again on each new connection (the
// broker may have restarted without them, when they are not durable).
//
// A publish waits for the connection instead of failing while the broker is
// unreachable: the events it carries are in the durable outbox, and an
// unreachable broker is not the event's fault, so it should not use up the
// event's attempts. With `confirms_enabled` a publish settles when the broker
// confirms (or refuses) it, or after `call_timeout`; without, once amqplib has
// taken it (waiting for 'drain' when its buffer is full).
import { connect, type Channel, type ChannelModel, type ConfirmChannel, type Options } from 'amqplib';
import { planTls } from './http.ts';
import type { RabbitPoolConfig } from './types.ts';

export interface ExchangeDeclaration {
  name: string;
  type: string;
  durable: boolean;
}

export type PublishOutcome =
  | { ok: true; timeMs: number; size: number }
  | { ok: false; reason: 'nack' | 'timeout' | 'channel' | 'closed'; message: string };

/** What happened to the connection, for the pool's metrics and logs. */
export type ConnectionEvent =
  | { kind: 'opened' }
  | { kind: 'closed'; error?: string }
  | { kind: 'failed'; error: string; nextAttemptInMs: number }
  | { kind: 'exchange_failed'; exchange: string; error: string };

export interface RabbitPublisher {
  /** Never rejects. */
  publish(exchange: string, routingKey: string, content: Buffer, props: Options.Publish): Promise<PublishOutcome>;
  readonly connected: boolean;
  close(): Promise<void>;
}

/** Shortest wait between two connection attempts, whatever reconnect.delay says (0 would spin). */
const MIN_RECONNECT_DELAY_MS = 100;

export function createRabbitPublisher(
  tag: string,
  cfg: RabbitPoolConfig,
  exchanges: readonly ExchangeDeclaration[],
  onEvent: (e: ConnectionEvent) => void,
): RabbitPublisher {
  const c = cfg.connection;
  const tlsPlan = c.tls === undefined ? undefined : planTls(c.tls, `outgoing_pools.rabbit.${tag}.connection.tls`);
  const target: Options.Connect = {
    protocol: tlsPlan === undefined ? 'amqp' : 'amqps',
    hostname: c.host,
    port: c.port,
    username: c.username,
    password: c.password,
    vhost: c.virtual_host,
    // A dead TCP path is noticed within two heartbeats.
    heartbeat: 30,
  };
  const socketOptions: Record<string, unknown> = { noDelay: true, timeout: Math.max(1000, cfg.call_timeout) };
  if (tlsPlan !== undefined) {
    Object.assign(socketOptions, tlsPlan.options);
    // A self-signed peer is accepted when its certificate is in cacertfile.
    socketOptions.rejectUnauthorized = tlsPlan.verify;
    if (tlsPlan.servername !== '') socketOptions.servername = tlsPlan.servername ?? c.host;
  }
  const delay = Math.max(MIN_RECONNECT_DELAY_MS, c.reconnect.delay);

  let closed = false;
  let model: ChannelModel | null = null;
  let channel: Channel | ConfirmChannel | null = null;
  let waiting: Array<() => void> = [];
  let timer: NodeJS.Timeout | null = null;
  let connecting = false;

  const wake = () => {
    const w = waiting;
    waiting = [];
    for (const f of w) f();
  };

  const ready = (): Promise<void> | undefined => {
    if (channel !== null || closed) return undefined;
    return new Promise((resolve) => waiting.push(resolve));
  };

  const retryLater = (error: string) => {
    if (closed) return;
    onEvent({ kind: 'failed', error, nextAttemptInMs: delay });
    timer = setTimeout(() => {
      timer = null;
      void open();
    }, delay);
  };

  const openChannel = async (m: ChannelModel): Promise<void> => {
    const ch = c.confirms_enabled ? await m.createConfirmChannel() : await m.createChannel();
    ch.on('error', () => {});
    for (const x of exchanges) {
      try {
        await ch.assertExchange(x.name, x.type, { durable: x.durable });
      } catch (e) {
        // The broker closes the channel (e.g. the exchange exists with another type).
        onEvent({ kind: 'exchange_failed', exchange: x.name, error: (e as Error).message });
        throw e;
      }
    }
    ch.on('close', () => {
      if (channel !== ch) return;
      channel = null;
      // The connection may still be up (a channel error): a new channel on it.
      if (!closed && model === m) {
        openChannel(m).then(
          () => {},
          (e: unknown) => {
            void m.close().catch(() => {});
            if (model === m) model = null;
            retryLater((e as Error).message);
          },
        );
      }
    });
    if (closed) {
      await ch.close().catch(() => {});
      return;
    }
    channel = ch;
    wake();
  };

  const open = async (): Promise<void> => {
    if (closed || connecting) return;
    connecting = true;
    let m: ChannelModel | null = null;
    try {
      m = await connect(target, socketOptions);
      m.on('error', () => {});
      const mm = m;
      m.on('close', (err?: Error) => {
        if (model !== mm) return;
        model = null;
        channel = null;
        onEvent({ kind: 'closed', error: err?.message });
        if (!closed) retryLater(err?.message ?? 'connection closed');
      });
      model = m;
      onEvent({ kind: 'opened' });
      await openChannel(m);
    } catch (e) {
      const wasOpen = model === m && m !== null;
      if (m !== null) {
        model = null;
        channel = null;
        await m.close().catch(() => {});
        if (wasOpen) onEvent({ kind: 'closed', error: (e as Error).message });
      }
      retryLater((e as Error).message);
    } finally {
      connecting = false;
    }
  };

  const publishOnce = (ch: Channel | ConfirmChannel, exchange: string, key: string, content: Buffer, props: Options.Publish): Promise<PublishOutcome> => {
    const start = performance.now();
    const size = content.byteLength;
    if (!c.confirms_enabled) {
      let taken: boolean;
      try {
        taken = ch.publish(exchange, key, content, props);
      } catch (e) {
        return Promise.resolve({ ok: false, reason: 'channel', message: (e as Error).message });
      }
      const done: PublishOutcome = { ok: true, timeMs: 0, size };
      if (taken) return Promise.resolve({ ...done, timeMs: performance.now() - start });
      // amqplib's buffer is full: the next publish waits until it drains.
      return new Promise((resolve) => {
        const settle = () => {
          ch.off('drain', settle);
          ch.off('close', settle);
          resolve({ ...done, timeMs: performance.now() - start });
        };
        ch.on('drain', settle);
        ch.on('close', settle);
      });
    }
    return new Promise((resolve) => {
      let settled = false;
      const t = setTimeout(() => {
        if (settled) return;
        settled = true;
        resolve({ ok: false, reason: 'timeout', message: `not confirmed by the broker within ${cfg.call_timeout} ms` });
      }, cfg.call_timeout);
      try {
        (ch as ConfirmChannel).publish(exchange, key, content, props, (err: unknown) => {
          if (settled) return;
          settled = true;
          clearTimeout(t);
          if (err === null || err === undefined) resolve({ ok: true, timeMs: performance.now() - start, size });
          else {
            const message = (err as Error).message ?? String(err);
            resolve({ ok: false, reason: message === 'message nacked' ? 'nack' : 'channel', message });
          }
        });
      } catch (e) {
        settled = true;
        clearTimeout(t);
        resolve({ ok: false, reason: 'channel', message: (e as Error).message });
      }
    });
  };

  void open();

  return {
    get connected() {
      return channel !== null;
    },
    async publish(exchange, routingKey, content, props) {
      for (;;) {
        if (closed) return { ok: false, reason: 'closed', message: 'the RabbitMQ connection is closing' };
        const ch = channel;
        if (ch !== null) return publishOnce(ch, exchange, routingKey, content, props);
        await ready();
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      if (timer !== null) clearTimeout(timer);
      wake();
      const m = model;
      model = null;
      const ch = channel;
      channel = null;
      if (ch !== null) await ch.close().catch(() => {});
      if (m !== null) {
        await m.close().catch(() => {});
        onEvent({ kind: 'closed' });
      }
    },
  };
}
