// Counters of what hostile or broken clients cause at the c2s layer, on the
// server's prom-client registry. The session and the listeners see only the
// C2SMetrics interface, so that tests and other transports can pass their own.
import { Counter, type Registry } from 'prom-client';

/** Stream errors clients sent (RFC 6120 §4.9), by condition. */
export const STREAM_ERRORS_RECEIVED = 'petrel_c2s_stream_errors_received_total';
/** Connections closed on arrival, by reason ("global_limit", "address_limit"). */
export const CONNECTIONS_REFUSED = 'petrel_c2s_connections_refused_total';
/** SASL attempts refused or failed, by reason ("failure", "superseded", "account_locked", "address_banned"). */
export const AUTH_FAILURES = 'petrel_c2s_auth_failures_total';

export interface C2SMetrics {
  streamErrorReceived(condition: string): void;
  connectionRefused(reason: 'global_limit' | 'address_limit'): void;
  authFailure(reason: 'failure' | 'superseded' | 'account_locked' | 'address_banned'): void;
}

/** Conditions counted under their own label; anything else a client sends is counted as "other". */
const CONDITIONS = new Set([
  'bad-format', 'bad-namespace-prefix', 'conflict', 'connection-timeout', 'host-gone', 'host-unknown',
  'improper-addressing', 'internal-server-error', 'invalid-from', 'invalid-namespace', 'invalid-xml',
  'not-authorized', 'not-well-formed', 'policy-violation', 'remote-connection-failed', 'reset',
  'resource-constraint', 'restricted-xml', 'see-other-host', 'system-shutdown', 'undefined-condition',
  'unsupported-encoding', 'unsupported-feature', 'unsupported-stanza-type', 'unsupported-version',
]);

function counter(registry: Registry, name: string, help: string, label: string): Counter<string> {
  return (registry.getSingleMetric(name) as Counter<string> | undefined) ?? new Counter({ name, help, labelNames: [label], registers: [registry] });
}

export function c2sMetrics(registry: Registry): C2SMetrics {
  const received = counter(registry, STREAM_ERRORS_RECEIVED, 'Stream errors sent by clients, by condition', 'condition');
  const refused = counter(registry, CONNECTIONS_REFUSED, 'c2s connections closed on arrival, by reason', 'reason');
  const auth = counter(registry, AUTH_FAILURES, 'Failed or refused SASL attempts, by reason', 'reason');
  // Declared at zero, so that a dashboard sees the series before the first event.
  for (const reason of ['global_limit', 'address_limit']) refused.inc({ reason }, 0);
  for (const reason of ['failure', 'superseded', 'account_locked', 'address_banned']) auth.inc({ reason }, 0);
  return {
    // A client chooses the condition: the label set stays bounded.
    streamErrorReceived: (c) => received.inc({ condition: CONDITIONS.has(c) ? c : 'other' }),
    connectionRefused: (reason) => refused.inc({ reason }),
    authFailure: (reason) => auth.inc({ reason }),
  };
}

/** Counts nothing: for contexts without a registry. */
export const NO_C2S_METRICS: C2SMetrics = {
  streamErrorReceived: () => {},
  connectionRefused: () => {},
  authFailure: () => {},
};
