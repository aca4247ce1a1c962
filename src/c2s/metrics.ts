// Metrics of client connections, registered on the server's prom-client
// registry. Where MongooseIM has the metric, its Prometheus name and labels
// are used (doc/operation-and-maintenance/MongooseIM-metrics.md: the
// xmpp_element_in_* / xmpp_element_out_* counters with host_type and
// connection_type, c2s_auth_failed_count, tcp_data_in_byte_size...);
// Petrel's own are named petrel_* with Prometheus' conventions. Every series
// exists at zero from start-up: the label values are known (the served
// hosts, "c2s", the RFC 6120 conditions), so each is made in advance, and the
// hot path increments a child it already holds.
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

/** A child made with labels() is only exported once incremented: this makes its series at zero. */
function zero<T extends Inc>(child: T): T {
  child.inc(0);
  return child;
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

export class C2SMetrics {
  readonly #hosts = new Map<string, HostC2SMetrics>();
  readonly #make: (host: string) => HostC2SMetrics;
  /** Petrel's: connections open now. */
  readonly open: Gauge;
  /** Petrel's: connections accepted since start. */
  readonly accepted: Counter;
  readonly #streamErrors = new Map<string, Inc>();
  readonly #streamErrorCounter: Counter;
  /** MongooseIM's tcp_data_in_byte_size / tls_data_in_byte_size {connection_type="c2s"}. */
  readonly tcpIn: Inc;
  readonly tlsIn: Inc;

  constructor(registry: Registry, hosts: readonly string[]) {
    const labelNames = ['host_type', 'connection_type'];
    const dir = (d: 'in' | 'out') => {
      const out = {} as Record<(typeof KINDS)[number], Counter>;
      for (const k of KINDS) {
        out[k] = new Counter({
          name: `xmpp_element_${d}_${k}`,
          help: `${HELP[k]} ${d === 'in' ? 'received from' : 'sent to'} clients`,
          labelNames,
          registers: [registry],
        });
      }
      return out;
    };
    const inC = dir('in');
    const outC = dir('out');
    const authFailed = new Counter({ name: 'c2s_auth_failed_count', help: 'failed client authentications', labelNames: ['host_type'], registers: [registry] });
    const logins = new Counter({ name: 'sm_session_logins', help: 'sessions opened (a resource bound)', labelNames: ['host_type'], registers: [registry] });
    const logouts = new Counter({ name: 'sm_session_logouts', help: 'sessions closed, whatever the reason', labelNames: ['host_type'], registers: [registry] });
    const authOk = new Counter({ name: 'petrel_c2s_auth_succeeded_total', help: 'successful client authentications', labelNames: ['host_type'], registers: [registry] });
    const children = (c: Record<(typeof KINDS)[number], Counter>, host: string): ElementCounters => {
      const l = { host_type: host, connection_type: 'c2s' };
      return {
        count: zero(c.count.labels(l)),
        stanza: zero(c.stanza_count.labels(l)),
        message: zero(c.message_count.labels(l)),
        iq: zero(c.iq_count.labels(l)),
        presence: zero(c.presence_count.labels(l)),
        error: zero(c.error_count.labels(l)),
        messageError: zero(c.message_error_count.labels(l)),
        iqError: zero(c.iq_error_count.labels(l)),
        presenceError: zero(c.presence_error_count.labels(l)),
      };
    };
    this.#make = (host) => ({
      in: children(inC, host),
      out: children(outC, host),
      authFailed: zero(authFailed.labels({ host_type: host })),
      authSucceeded: zero(authOk.labels({ host_type: host })),
      logins: zero(logins.labels({ host_type: host })),
      logouts: zero(logouts.labels({ host_type: host })),
    });
    // Elements before a served domain is known (a stream to another domain) count under host_type "", as MongooseIM's.
    for (const h of ['', ...hosts]) this.#hosts.set(h, this.#make(h));
    this.open = new Gauge({ name: 'petrel_c2s_connections', help: 'client connections open now', registers: [registry] });
    this.accepted = new Counter({ name: 'petrel_c2s_connections_accepted_total', help: 'client connections accepted', registers: [registry] });
    this.#streamErrorCounter = new Counter({ name: 'petrel_c2s_stream_errors_total', help: 'client streams ended with a stream error, by condition', labelNames: ['condition'], registers: [registry] });
    for (const c of STREAM_ERROR_CONDITIONS) this.#streamErrors.set(c, zero(this.#streamErrorCounter.labels({ condition: c })));
    const data = (name: string, help: string) => zero(new Counter({ name, help, labelNames: ['connection_type'], registers: [registry] }).labels({ connection_type: 'c2s' }));
    this.tcpIn = data('tcp_data_in_byte_size', 'bytes received from clients over plain TCP');
    this.tlsIn = data('tls_data_in_byte_size', 'bytes received from clients over TLS');
  }

  /** The counters of a served host ("" for none). */
  forHost(host: string): HostC2SMetrics {
    return this.#hosts.get(host) ?? this.#hosts.get('')!;
  }

  streamError(condition: string): void {
    (this.#streamErrors.get(condition) ?? this.#streamErrors.get('undefined-condition')!).inc();
  }
}
