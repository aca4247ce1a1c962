// Metrics of the push backend. MongooseIM has none of its own for
// mod_event_pusher_push; these are Petrel's. The delivery engine's metrics
// (attempts, retries, dead letters, outbox depth) come on top.
import { Counter, type Registry } from 'prom-client';

/** Notifications by outcome: queued, delivered, retried, failed, device_not_registered, dropped, invalid, unreachable. */
export const PUSH_NOTIFICATIONS = 'petrel_event_pusher_push_notifications_total';
/** Registrations removed because MongoosePush said the device is not registered (HTTP 410). */
export const PUSH_DISABLED = 'petrel_event_pusher_push_registrations_disabled_total';
/** Enable and disable requests by result: enabled, disabled, bad_request, refused, limit. */
export const PUSH_REQUESTS = 'petrel_event_pusher_push_requests_total';

function getOrCreate(registry: Registry, name: string, help: string, labelNames: string[]): Counter<string> {
  return (registry.getSingleMetric(name) as Counter<string> | undefined) ?? new Counter({ name, help, labelNames, registers: [registry] });
}

export interface PushMetrics {
  notification(hostType: string, outcome: string): void;
  disabled(hostType: string, reason: string): void;
  request(hostType: string, result: string): void;
}

export const NOTIFICATION_OUTCOMES = ['queued', 'delivered', 'retried', 'failed', 'device_not_registered', 'dropped', 'invalid', 'unreachable'];
export const REQUEST_RESULTS = ['enabled', 'disabled', 'bad_request', 'refused', 'limit'];

export function pushMetrics(registry: Registry, hosts: readonly string[] = []): PushMetrics {
  const n = getOrCreate(registry, PUSH_NOTIFICATIONS, 'XEP-0357 push notifications by outcome', ['host_type', 'outcome']);
  const d = getOrCreate(registry, PUSH_DISABLED, 'Push registrations removed because the device is no longer registered', ['host_type', 'reason']);
  const r = getOrCreate(registry, PUSH_REQUESTS, 'XEP-0357 enable and disable requests by result', ['host_type', 'result']);
  for (const h of hosts) {
    for (const o of NOTIFICATION_OUTCOMES) n.inc({ host_type: h, outcome: o }, 0);
    d.inc({ host_type: h, reason: 'device_not_registered' }, 0);
    for (const x of REQUEST_RESULTS) r.inc({ host_type: h, result: x }, 0);
  }
  return {
    notification: (h, outcome) => n.inc({ host_type: h, outcome }),
    disabled: (h, reason) => d.inc({ host_type: h, reason }),
    request: (h, result) => r.inc({ host_type: h, result }),
  };
}
