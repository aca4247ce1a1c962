// What metrics/ serves over HTTP. MongooseIM's `mongoose_prometheus_handler`
// (no options besides host and path) answers the registry in the Prometheus
// text format; and `petrel metrics` reads a JSON snapshot at SNAPSHOT_PATH,
// which the wiring hands to every [[listen.http]] listener as a loopback
// route (see src/http/listener.ts).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { section } from '../config/schema.ts';
import type { HttpHandlerDefinition, HttpService } from '../http/types.ts';
import type { LoopbackRoute } from '../http/listener.ts';
import type { MetricsSampler } from './snapshot.ts';

export const SNAPSHOT_PATH = '/_petrel/metrics.json';

/** What the Prometheus handler needs from the wiring. */
export interface PrometheusHandlerContext {
  metrics: Registry;
  logger?: Logger;
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  // node:http sends no body in answer to HEAD.
  res.end(body);
}

/** Answers with what `render` gives, or 500 when it fails. */
function rendering(render: () => Promise<string>, type: () => string, logger: Logger | undefined): HttpService['request'] {
  return (_req: IncomingMessage, res: ServerResponse) => {
    render().then(
      (body) => send(res, 200, type(), body),
      (err) => {
        logger?.error({ what: 'metrics_render_failed', err: String(err) }, 'metrics could not be rendered');
        send(res, 500, 'text/plain; charset=utf-8', 'metrics could not be rendered\n');
      },
    );
  };
}

export const prometheusHandler: HttpHandlerDefinition<PrometheusHandlerContext> = {
  configSpec: section({}),
  create(ctx) {
    return { request: rendering(() => ctx.metrics.metrics(), () => ctx.metrics.contentType, ctx.logger) };
  },
};

/** The snapshot `petrel metrics` reads, as a route of every HTTP listener. */
export function snapshotRoute(sampler: MetricsSampler, logger?: Logger): LoopbackRoute {
  return {
    path: SNAPSHOT_PATH,
    service: { request: rendering(async () => JSON.stringify(await sampler.snapshot()), () => 'application/json', logger) },
  };
}
