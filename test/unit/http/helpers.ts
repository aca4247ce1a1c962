// Shared by the HTTP listener tests: a validated [[listen.http]] table, a
// silent logger, certificates made by openssl, and raw requests over a socket.
import { execFile } from 'node:child_process';
import { connect } from 'node:net';
import { join } from 'node:path';
import pino from 'pino';
import type { HttpListenerConfig } from '../../../src/http/types.ts';
import type { C2SShared } from '../../../src/c2s/listener.ts';

export const silent = pino({ level: 'silent' });

/** The c2s part of the handlers' context, for listeners that serve no WebSocket handler (nothing reads it). */
export const noC2S = {} as C2SShared;

/** A listener on a free loopback port with the Prometheus handler at /metrics, as the spec would produce it. */
export function httpListener(over: Partial<HttpListenerConfig> = {}): HttpListenerConfig {
  return {
    port: 0,
    ip_address: '127.0.0.1',
    proto: 'tcp',
    transport: { num_acceptors: 100, max_connections: 1024 },
    protocol: { compress: false },
    handlers: { mongoose_prometheus_handler: [{ host: '_', path: '/metrics' }] },
    ...over,
  };
}

/** A self-signed certificate for CN=localhost and its key, written into `dir`. */
export function makeCert(dir: string, name = 'server'): Promise<{ certfile: string; keyfile: string }> {
  const certfile = join(dir, `${name}-cert.pem`);
  const keyfile = join(dir, `${name}-key.pem`);
  return new Promise((resolve, reject) => {
    execFile(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '2', '-keyout', keyfile, '-out', certfile],
      (err, _stdout, stderr) => (err ? reject(new Error(`openssl failed: ${stderr}`)) : resolve({ certfile, keyfile })),
    );
  });
}

/** Sends `text` as is and returns everything the server sends until it closes or `until` matches. */
export function rawExchange(port: number, text: string, until?: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete answer; got ${JSON.stringify(got)}`));
    }, 5000);
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(got);
    };
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      got += d;
      if (until?.test(got)) done();
    });
    socket.on('end', done);
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.write(text);
  });
}
