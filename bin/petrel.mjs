#!/usr/bin/env node
// Launcher for the `petrel` command.
//
// What it runs: in a git checkout, the TypeScript sources (src/cli/main.ts),
// by Node's type stripping; in the installed package, the JavaScript that
// `npm pack` compiled into dist/ (Node refuses to strip types under
// node_modules, and the package ships no sources).
//
// With which Node: Petrel needs Node.js 24 (node:sqlite; type stripping for
// the sources). When the Node running this file is suitable, the command runs
// in this very process: no second process, so nothing can be left behind.
// Otherwise (the machine's own Node is older, as Debian's v20) the command is
// run by the Node.js 24 that the package depends on (the "node" npm package),
// in a child process, since Node has no exec(2).
//
// The child must never outlive this launcher, whatever kills it, SIGKILL
// included: an orphaned server would keep the ports and the data directory.
// Node offers no parent-death signal (Linux's prctl PR_SET_PDEATHSIG) and a
// killed process cannot forward anything, so the child watches its parent
// through an IPC channel: the kernel closes the launcher's end when the
// launcher dies, however it dies, and the child sees 'disconnect' at once
// (no polling of process.ppid) and stops the way SIGTERM stops it. Signals
// the launcher does receive are forwarded, and the child's exit status
// becomes the launcher's.
//
// Compiled once: Node's compile cache keeps what it made of the sources (the
// types stripped, V8's code) in node_modules/.cache/petrel-compile inside
// this installation, so a command after the first starts faster. It is
// written only where this installation is writable by whoever runs it (never
// a directory shared with other users, whose entries would then run as
// Petrel); elsewhere, or with NODE_DISABLE_COMPILE_CACHE=1, Node compiles
// every time. NODE_COMPILE_CACHE names another directory.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import nodeModule, { createRequire } from 'node:module';
import { constants } from 'node:os';
import { dirname, join, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const NODE_MAJOR = 24;
/** Set in the child's environment: its IPC channel is the launcher's. */
const CHILD_MARK = 'PETREL_LAUNCHER_CHILD';

const self = fileURLToPath(import.meta.url);
const root = join(dirname(self), '..');
const source = join(root, 'src', 'cli', 'main.ts');
const compiled = join(root, 'dist', 'cli', 'main.js');
const useSource = existsSync(source) && !root.split(sep).includes('node_modules');
const entry = useSource ? source : compiled;
const major = Number(process.versions.node.split('.')[0]);
const suitable = major >= NODE_MAJOR && (!useSource || Boolean(process.features.typescript));
const isChild = process.env[CHILD_MARK] === '1';
/**
 * V8's young generation for the server, per semi-space in MiB. Left alone,
 * V8 grows it up to 64 MiB a semi-space under a burst (logins, a flood) on
 * a 64-bit machine and keeps it: 10,000 connections logging in at once left
 * about 5 KiB per connection of young generation behind. At 16 the
 * saturation figures of docs/benchmarks.md show no cost; at 8 the collector
 * took 2.5 times as much CPU. NODE_OPTIONS, or a flag given to Node, that
 * sets --max-semi-space-size wins.
 */
const SERVER_SEMI_SPACE_MB = 16;
const SEMI_SPACE_FLAG = '--max-semi-space-size';

function die(message) {
  process.stderr.write(`petrel: ${message}\n`);
  process.exit(1);
}

if (!existsSync(entry)) {
  die(`${entry} is missing: this copy of Petrel is incomplete (a package built without "npm pack"?)`);
}

if (suitable) {
  if (isChild) watchParent();
  else reexecWithServerFlags();
  useCompileCache();
  await import(pathToFileURL(entry).href);
} else if (isChild) {
  // The Node this launcher picked cannot run Petrel either (NODE_OPTIONS
  // turning type stripping off, for one): say so rather than loop.
  die(`the Node.js ${process.version} at ${process.execPath} cannot run ${entry}${useSource ? ' (type stripping is off)' : ''}`);
} else {
  runInChild(pinnedNode());
}

/** Node's compile cache in this installation (see the top); a cache that cannot be written is no error. */
function useCompileCache() {
  // Node.js 22.1 and later; an older Node only runs this launcher to start the pinned one.
  if (typeof nodeModule.enableCompileCache !== 'function') return;
  try {
    nodeModule.enableCompileCache(process.env.NODE_COMPILE_CACHE || join(root, 'node_modules', '.cache', 'petrel-compile'));
  } catch {
    // Compiling every time is what Node does without the cache.
  }
}

/** In the child: stop as SIGTERM stops Petrel once the launcher is gone. */
function watchParent() {
  delete process.env[CHILD_MARK];
  if (process.channel === undefined) return;
  const stop = () => process.kill(process.pid, 'SIGTERM');
  process.once('disconnect', stop);
  // Listening for 'disconnect' keeps the channel referenced; commands that
  // finish (register, check-config) must still end on their own.
  process.channel.unref();
  // The launcher may have died before the listener was added.
  if (!process.connected) stop();
}

/** The Node.js 24 binary of the "node" npm package this package depends on. */
function pinnedNode() {
  const need = `petrel needs Node.js ${NODE_MAJOR} or later; this is ${process.version} (${process.execPath})`;
  let pkgFile;
  try {
    pkgFile = createRequire(import.meta.url).resolve('node/package.json');
  } catch {
    die(`${need}, and the Node.js ${NODE_MAJOR} that comes with Petrel (npm package "node") is not installed: run "npm install" in ${root}`);
  }
  const pkg = JSON.parse(readFileSync(pkgFile, 'utf8'));
  const bin = join(dirname(pkgFile), typeof pkg.bin === 'string' ? pkg.bin : pkg.bin.node);
  if (Number(String(pkg.version).split('.')[0]) < NODE_MAJOR || !existsSync(bin)) {
    die(
      `${need}, and the Node.js that comes with Petrel (npm package "node" ${pkg.version} in ${dirname(pkgFile)}) is not set up; ` +
        'its install script downloads the binary: reinstall with scripts allowed (npm install -g --allow-scripts=node petrel), or run petrel with Node.js 24',
    );
  }
  return bin;
}

/** The Node flags `petrel start` runs with, unless this Node was given its own. */
function serverFlags() {
  if (process.argv[2] !== 'start') return [];
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
  if (given.some((a) => a === SEMI_SPACE_FLAG || a.startsWith(`${SEMI_SPACE_FLAG}=`))) return [];
  return [`${SEMI_SPACE_FLAG}=${SERVER_SEMI_SPACE_MB}`];
}

/**
 * V8 takes its heap flags at start only: the server's are set by replacing
 * this process with a Node given them (same process id, same descriptors;
 * nothing has run yet). Without execve (not a POSIX system) it runs as is.
 */
function reexecWithServerFlags() {
  const flags = serverFlags();
  if (flags.length === 0 || typeof process.execve !== 'function') return;
  process.execve(process.execPath, [process.execPath, ...process.execArgv, ...flags, self, ...process.argv.slice(2)], process.env);
}

function runInChild(node) {
  // No execArgv: flags given to this Node (an older one) are not the child's.
  const child = spawn(node, [...serverFlags(), self, ...process.argv.slice(2)], {
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, [CHILD_MARK]: '1' },
  });
  const forward = (signal) => child.kill(signal);
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, forward);
  child.once('error', (err) => die(`cannot start ${node}: ${err.message}`));
  child.once('exit', (code, signal) => {
    if (signal === null) process.exit(code ?? 1);
    // Die of the same signal, as a shell reports it; the exit code is the fallback.
    for (const s of signals) process.off(s, forward);
    process.kill(process.pid, signal);
    process.exit(128 + (constants.signals[signal] ?? 0));
  });
}
