// Metrics of client connections, registered on the server's prom-client
// registry. Where MongooseIM has the metric, its Prometheus name and labels
// are used (doc/operation-and-maintenance/MongooseIM-metrics.md: the
// xmpp_element_in_* / xmpp_element_out_* counters with host_type and
// connection_type, c2s_auth_failed_count, tcp_data_in_byte_size...);
// Petrel's own are named petrel_* with Prometheus' conventions. Every series
// exists at zero from start-up: the label values are known (the served
// hosts, "c2s", the RFC 6120 conditions), so each is made in advance, and the
// hot path adds to a number it already holds, which the scrape reads.
//
// Beside them, what hostile or broken clients cause: stream errors clients
// send, connections refused by the connection limits, and failed or refused
// logins by reason (petrel_c2s_auth_failures_total breaks down what
// MongooseIM's c2s_auth_failed_count counts per host).
import { Counter, Gauge, type Registry } from 'prom-client';

/** RFC 6120 §4.9.3: every stream error condition, so each has its series from the start. */
export const STREAM_ERROR_CONDITIONS = [
  'bad-format', 'bad-namespace-prefix', 'conflict', 'connection-timeout', 'host-gone', 'host-unknown',
  'improper-addressing', 'internal-server-error', 'invalid-from', 'invalid-namespace', 'invalid-xml',
  'not-authorized', 'not-well-formed', 'policy-violation', 'remote-connection-failed', 'reset',
  'resource-constraint', 'restricted-xml', 'see-other-host', 'system-shutdown', 'undefined-condition',
  'unsupported-encoding', 'unsupported-feature', 'unsupported-stanza-type', 'unsupported-version',
] as const;

type Inc = { inc(n?: number): void };

/**
 * A plain number the hot path adds to. prom-client's labelled child hashes
 * its labels on every inc(); a tally is one addition, and its counter reads
 * every tally when Prometheus scrapes.
 */
class Tally implements Inc {
  n = 0;
  inc(k = 1): void {
    this.n += k;
  }
}

/** A counter whose series are tallies, each made (and so exported at zero) from the start. */
function talliedCounter(registry: Registry, name: string, help: string, labelNames: string[]): (labels: Record<string, string>) => Tally {
  const tallies: Array<[Record<string, string>, Tally]> = [];
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, t] of tallies) this.inc(labels, t.n);
    },
  });
  return (labels) => {
    const t = new Tally();
    tallies.push([labels, t]);
    return t;
  };
}

/** The element counters of one direction for one host. */
export interface ElementCounters {
  count: Inc;
  stanza: Inc;
  message: Inc;
  iq: Inc;
  presence: Inc;
  error: Inc;
  messageError: Inc;
  iqError: Inc;
  presenceError: Inc;
}

/** The counters a session uses for its host. */
export interface HostC2SMetrics {
  readonly in: ElementCounters;
  readonly out: ElementCounters;
  readonly authFailed: Inc;
  readonly authSucceeded: Inc;
  /** MongooseIM's sm_session_logins / sm_session_logouts: a resource bound, a bound session ended (replaced ones too). */
  readonly logins: Inc;
  readonly logouts: Inc;
}

const KINDS = ['count', 'stanza_count', 'message_count', 'iq_count', 'presence_count', 'error_count', 'message_error_count', 'iq_error_count', 'presence_error_count'] as const;
const HELP: Record<(typeof KINDS)[number], string> = {
  count: 'XML elements',
  stanza_count: 'stanzas',
  message_count: 'message stanzas',
  iq_count: 'IQ stanzas',
  presence_count: 'presence stanzas',
  error_count: 'stanzas of type error',
  message_error_count: 'message stanzas of type error',
  iq_error_count: 'IQ stanzas of type error',
  presence_error_count: 'presence stanzas of type error',
};

/** Counts one element of a direction: `name` is the element's, `isError` its type="error". */
export function countElement(c: ElementCounters, name: string, isError: boolean): void {
  c.count.inc();
  if (name === 'message') {
    c.stanza.inc();
    c.message.inc();
    if (isError) {
      c.error.inc();
      c.messageError.inc();
    }
  } else if (name === 'iq') {
    c.stanza.inc();
    c.iq.inc();
    if (isError) {
      c.error.inc();
      c.iqError.inc();
    }
  } else if (name === 'presence') {
    c.stanza.inc();
    c.presence.inc();
    if (isError) {
      c.error.inc();
      c.presenceError.inc();
    }
  }
}

/** Stream errors clients sent (RFC 6120 §4.9), by condition. */
export const STREAM_ERRORS_RECEIVED = 'petrel_c2s_stream_errors_received_total';
/** Connections closed on arrival, by reason ("global_limit", "address_limit"). */
export const CONNECTIONS_REFUSED = 'petrel_c2s_connections_refused_total';
/** SASL attempts refused or failed, by reason ("failure", "superseded", "account_locked", "address_banned"). */
export const AUTH_FAILURES = 'petrel_c2s_auth_failures_total';

/** Windows of 100 ms in which an account was a heavy sender (sender-rates.ts). */
export const HEAVY_SENDER_WINDOWS = 'petrel_c2s_heavy_sender_windows_total';

export type ConnectionRefusedReason = 'global_limit' | 'address_limit';
export type AuthFailureReason = 'failure' | 'superseded' | 'account_locked' | 'address_banned';
const REFUSED_REASONS: readonly ConnectionRefusedReason[] = ['global_limit', 'address_limit'];
const AUTH_FAILURE_REASONS: readonly AuthFailureReason[] = ['failure', 'superseded', 'account_locked', 'address_banned'];

export class C2SMetrics {
  readonly #received = new Map<string, Inc>();
  readonly #refused = new Map<string, Inc>();
  readonly #authFailures = new Map<string, Inc>();

  readonly #hosts = new Map<string, HostC2SMetrics>();
  /** Petrel's: connections open now. */
  readonly open: Gauge;
  /** Petrel's: connections accepted since start. */
  readonly accepted: Inc;
  readonly #streamErrors = new Map<string, Inc>();
  /** MongooseIM's tcp_data_in_byte_size / tls_data_in_byte_size {connection_type="c2s"}. */
  readonly tcpIn: Inc;
  readonly tlsIn: Inc;
  /** Petrel's: windows of sender-rates.ts in which an account was a heavy sender. */
  readonly heavySenderWindows: Inc;

  constructor(registry: Registry, hosts: readonly string[]) {
    const dir = (d: 'in' | 'out') => {
      const out = {} as Record<(typeof KINDS)[number], (labels: Record<string, string>) => Tally>;
      for (const k of KINDS) {
        const help = `${HELP[k]} ${d === 'in' ? 'received from' : 'sent to'} clients`;
        out[k] = talliedCounter(registry, `xmpp_element_${d}_${k}`, help, ['host_type', 'connection_type']);
      }
      return out;
    };
    const inC = dir('in');
    const outC = dir('out');
    const byHost = (name: string, help: string) => talliedCounter(registry, name, help, ['host_type']);
    const authFailed = byHost('c2s_auth_failed_count', 'failed client authentications');
    const authOk = byHost('petrel_c2s_auth_succeeded_total', 'successful client authentications');
    const logins = byHost('sm_session_logins', 'sessions opened (a resource bound)');
    const logouts = byHost('sm_session_logouts', 'sessions closed, whatever the reason');
    const children = (c: typeof inC, host: string): ElementCounters => {
      const l = { host_type: host, connection_type: 'c2s' };
      return {
        count: c.count(l),
        stanza: c.stanza_count(l),
        message: c.message_count(l),
        iq: c.iq_count(l),
        presence: c.presence_count(l),
        error: c.error_count(l),
        messageError: c.message_error_count(l),
        iqError: c.iq_error_count(l),
        presenceError: c.presence_error_count(l),
      };
    };
    // Elements before a served domain is known (a stream to another domain) count under host_type "", as MongooseIM's.
    for (const host of ['', ...hosts]) {
      this.#hosts.set(host, {
        in: children(inC, host),
        out: children(outC, host),
        authFailed: authFailed({ host_type: host }),
        authSucceeded: authOk({ host_type: host }),
        logins: logins({ host_type: host }),
        logouts: logouts({ host_type: host }),
      });
    }
    this.open = new Gauge({ name: 'petrel_c2s_connections', help: 'client connections open now', registers: [registry] });
    this.accepted = talliedCounter(registry, 'petrel_c2s_connections_accepted_total', 'client connections accepted', [])({});
    const streamErrors = talliedCounter(registry, 'petrel_c2s_stream_errors_total', 'client streams ended with a stream error, by condition', ['condition']);
    for (const c of STREAM_ERROR_CONDITIONS) this.#streamErrors.set(c, streamErrors({ condition: c }));
    const data = (name: string, help: string) => talliedCounter(registry, name, help, ['connection_type'])({ connection_type: 'c2s' });
    this.tcpIn = data('tcp_data_in_byte_size', 'bytes received from clients over plain TCP');
    this.tlsIn = data('tls_data_in_byte_size', 'bytes received from clients over TLS');
    this.heavySenderWindows = talliedCounter(registry, HEAVY_SENDER_WINDOWS, 'windows of 100 ms in which a user\'s client sessions together read more than heavy_sender_factor times the other users\' mean, and each had a quarter of its input budget', [])({});
    const received = talliedCounter(registry, STREAM_ERRORS_RECEIVED, 'stream errors sent by clients, by condition', ['condition']);
    for (const c of [...STREAM_ERROR_CONDITIONS, 'other']) this.#received.set(c, received({ condition: c }));
    const refused = talliedCounter(registry, CONNECTIONS_REFUSED, 'client connections refused on arrival by the connection limits, by reason', ['reason']);
    for (const r of REFUSED_REASONS) this.#refused.set(r, refused({ reason: r }));
    const auth = talliedCounter(registry, AUTH_FAILURES, 'failed or refused SASL attempts, by reason', ['reason']);
    for (const r of AUTH_FAILURE_REASONS) this.#authFailures.set(r, auth({ reason: r }));
  }

  /** A client sent a stream error; the client chooses the condition, so an unknown one counts as "other". */
  streamErrorReceived(condition: string): void {
    (this.#received.get(condition) ?? this.#received.get('other')!).inc();
  }

  connectionRefused(reason: ConnectionRefusedReason): void {
    this.#refused.get(reason)!.inc();
  }

  authFailure(reason: AuthFailureReason): void {
    this.#authFailures.get(reason)!.inc();
  }

  /** The counters of a served host ("" for none). */
  forHost(host: string): HostC2SMetrics {
    return this.#hosts.get(host) ?? this.#hosts.get('')!;
  }

  streamError(condition: string): void {
    (this.#streamErrors.get(condition) ?? this.#streamErrors.get('undefined-condition')!).inc();
  }
}
