// Builds dist/, the JavaScript the npm package runs (npm pack runs this as
// `prepack`). Node refuses to strip types from files under node_modules, so
// an installed Petrel cannot run its .ts sources the way a checkout does.
//
// tsc (tsconfig.build.json) emits ESM and declarations and rewrites the
// relative `.ts` specifiers of imports to `.js`. Two kinds of relative
// references it leaves alone are fixed here:
//   - worker entry points, written `new URL('./x.ts', import.meta.url)`: the
//     same rewrite, checked against the files emitted;
//   - `.ts` specifiers in the declarations: `.js`, the form every TypeScript
//     version resolves to the `.d.ts` beside it.
// Any other relative `.ts` string left in the JavaScript fails the build,
// since the installed package would look for a file that is not there.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');

rmSync(dist, { recursive: true, force: true });
// The project's own TypeScript, found as npm finds its `tsc` command.
const tsPackage = createRequire(import.meta.url).resolve('typescript/package.json');
const tsc = join(dirname(tsPackage), (JSON.parse(readFileSync(tsPackage, 'utf8')) as { bin: { tsc: string } }).bin.tsc);
const run = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
if (run.status !== 0) process.exit(run.status ?? 1);

function* files(dir: string): Generator<string> {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* files(p);
    else yield p;
  }
}

const WORKER_URL = /new URL\((['"])(\.\.?\/[^'"]+)\.ts\1, import\.meta\.url\)/g;
const RELATIVE_TS = /(['"`])\.\.?\/[^'"`\n]*\.ts\1/g;
const problems: string[] = [];

for (const file of files(dist)) {
  const text = readFileSync(file, 'utf8');
  let out = text;
  if (file.endsWith('.d.ts')) {
    out = text.replace(RELATIVE_TS, (s) => s.slice(0, -4) + '.js' + s.slice(-1));
  } else if (file.endsWith('.js')) {
    out = text.replace(WORKER_URL, (_match, q: string, base: string) => {
      const target = resolve(dirname(file), base + '.js');
      if (!existsSync(target)) problems.push(`${relative(root, file)}: ${base}.ts was not emitted as ${relative(root, target)}`);
      return `new URL(${q}${base}.js${q}, import.meta.url)`;
    });
    for (const m of out.matchAll(RELATIVE_TS)) problems.push(`${relative(root, file)}: ${m[0]} would not exist in the package`);
  }
  if (out !== text) writeFileSync(file, out);
}

if (problems.length > 0) {
  process.stderr.write(`build: relative .ts references left in dist/:\n  ${problems.join('\n  ')}\n`);
  process.exit(1);
}
