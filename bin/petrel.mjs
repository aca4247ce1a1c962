#!/usr/bin/env node
// Launcher for the `petrel` command. Petrel's sources are TypeScript run by
// Node's type stripping, which needs Node 24; when this launcher is started by
// an older Node (the machine's own), it hands over to the Node 24 the package
// pins in its own node_modules.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const main = join(root, 'src', 'cli', 'main.ts');
const major = Number(process.versions.node.split('.')[0]);

if (major >= 24) {
  await import(main);
} else {
  const pinned = [join(root, 'node_modules', '.bin', 'node'), join(root, '..', '.bin', 'node')].find(existsSync);
  if (!pinned) {
    console.error(`petrel needs Node.js 24 or later (this is ${process.version}); run "npm install" in ${root}`);
    process.exit(1);
  }
  const child = spawn(pinned, [main, ...process.argv.slice(2)], { stdio: 'inherit' });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
}
