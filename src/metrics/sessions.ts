// Session-manager metrics, in MongooseIM's Prometheus names
// (doc/operation-and-maintenance/MongooseIM-metrics.md, "Sessions and
// routing" and "Global metrics"): sm_session_count per host type and the
// node-wide session gauges. The gauges are read from the session table when scraped,
// so nothing is counted on the message path.
import { Gauge, type Registry } from 'prom-client';
import type { SessionManager } from '../routing/sm.ts';

export function sessionMetrics(registry: Registry, sm: SessionManager, hosts: readonly string[]): void {
  new Gauge({
    name: 'sm_session_count',
    help: 'sessions bound now, by host type',
    labelNames: ['host_type'],
    registers: [registry],
    collect() {
      const by = new Map<string, number>(hosts.map((h) => [h, 0]));
      for (const s of sm.all()) if (s.clusterNode === undefined) by.set(s.jid.domain, (by.get(s.jid.domain) ?? 0) + 1);
      for (const [h, n] of by) this.set({ host_type: h }, n);
    },
  });
  const total = (name: string, help: string, value: () => number) =>
    new Gauge({ name, help, registers: [registry], collect() { this.set(value()); } });
  // The table holds the other nodes' sessions too in a cluster (general.sm_backend = "cets").
  total('sm_node_sessions_count', 'sessions bound to this node', () => sm.localCount());
  total('sm_total_sessions_count', 'sessions bound in the cluster', () => sm.count());
  total('sm_unique_sessions_count', 'users with at least one bound session', () => sm.users());
  // sm_session_logins and sm_session_logouts are counted by the sessions themselves (src/c2s/metrics.ts).
}
