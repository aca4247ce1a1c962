// `petrel register`: the password from the command line, from standard input
// or from a prompt on a terminal (no echo), many accounts from a file in one
// transaction, and wrong invocations answered in Petrel's own words.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CLI, REPO_ROOT, startPetrel, testEnv, type CliResult, type Petrel } from './helpers/server.ts';
import { RawConnection } from './helpers/raw.ts';

const haveScript = spawnSync('script', ['--version'], { stdio: 'ignore' }).error === undefined;

let server: Petrel;

before(async () => {
  server = await startPetrel({ users: [['alice', 'pw-alice']] });
});

after(async () => {
  await server.dispose();
});

/** `petrel <args> -c <config>` with `input` on its standard input. */
function cli(args: string[], input = ''): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args, '-c', server.configPath], { cwd: REPO_ROOT, env: testEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.end(input);
  });
}

async function canLogIn(user: string, password: string): Promise<boolean> {
  const raw = await RawConnection.open(server.port);
  try {
    await raw.login(user, password, 'test');
    return true;
  } catch {
    return false;
  } finally {
    raw.destroy();
  }
}

describe('petrel register', () => {
  test('without a password, or with "-", the first line of standard input is the password', async () => {
    const r = await cli(['register', 'bob', 'localhost'], 'pw-bob\nignored\n');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^User bob@localhost registered/);
    assert.ok(await canLogIn('bob', 'pw-bob'));
    const dash = await cli(['register', 'carol', 'localhost', '-'], 'pw, carol with spaces\r\n');
    assert.equal(dash.code, 0, dash.stderr);
    assert.ok(await canLogIn('carol', 'pw, carol with spaces'));
    const empty = await cli(['register', 'dave', 'localhost'], '\n');
    assert.equal(empty.code, 1);
    assert.equal(empty.stderr, 'petrel: the password is empty\n');
  });

  test('on a terminal the password is asked for twice and never echoed', async (t) => {
    if (!haveScript) {
      t.skip('script(1) is not installed (Debian package bsdutils): no terminal to test the prompt on');
      return;
    }
    // script(1) runs the command on a pseudo-terminal of its own; each answer is typed once its prompt shows.
    const command = [process.execPath, CLI, 'register', 'erin', 'localhost', '-c', server.configPath].map((a) => `'${a}'`).join(' ');
    const child = spawn('script', ['-qec', command, '/dev/null'], { cwd: REPO_ROOT, env: testEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    let seen = '';
    // The prompts are followed by the terminal's cursor movements, so they are looked for, not matched at the end.
    const prompts = [/Password for erin@localhost: /, /Again: /];
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      seen += s;
      if (prompts.length > 0 && prompts[0]!.test(seen)) {
        prompts.shift();
        seen = seen.replace(/Password for erin@localhost: /, 'PROMPT1 ').replace(/Again: /, 'PROMPT2 ');
        child.stdin.write('secret-erin\r');
      }
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    clearTimeout(timer);
    assert.equal(prompts.length, 0, `the prompts did not both show: ${JSON.stringify(seen)}`);
    assert.equal(code, 0, seen);
    assert.match(seen, /User erin@localhost registered/);
    assert.doesNotMatch(seen, /secret-erin/);
    assert.ok(await canLogIn('erin', 'secret-erin'));
  });

  test('--file creates every account of a user,domain,password file, passwords with commas included', async () => {
    const file = join(server.dir, 'users.csv');
    await writeFile(file, '# staff\nfrank,localhost,pw-frank\n\ngrace,LOCALHOST,pw,grace\nheidi,localhost,pw-heidi\n');
    const r = await cli(['register', '--file', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^3 account\(s\) registered from /);
    assert.ok(await canLogIn('frank', 'pw-frank'));
    assert.ok(await canLogIn('grace', 'pw,grace'));
    assert.ok(await canLogIn('heidi', 'pw-heidi'));
  });

  test('--file creates no account when one line is wrong or names an existing account, and the error names the line', async () => {
    const file = join(server.dir, 'bad.csv');
    await writeFile(file, 'ivan,localhost,pw-ivan\nalice,localhost,other\n');
    const exists = await cli(['register', '--file', file]);
    assert.equal(exists.code, 1);
    assert.equal(exists.stderr, `petrel: ${file}:2: user alice@localhost already exists\nno account was created\n`);
    assert.equal(await canLogIn('ivan', 'pw-ivan'), false);
    await writeFile(file, 'judy,localhost,pw-judy\njudy\nken,example.org,pw\nli@x,localhost,pw\nmia,localhost,\n');
    const bad = await cli(['register', '--file', file]);
    assert.equal(bad.code, 1);
    assert.deepEqual(bad.stderr.trim().split('\n'), [
      `petrel: ${file}:2: expected user,domain,password`,
      `${file}:3: example.org is not a host of this server (general.hosts = ["localhost"])`,
      `${file}:4: invalid user name "li@x": ${bad.stderr.split('invalid user name "li@x": ')[1]!.split('\n')[0]}`,
      `${file}:5: the password is empty`,
      'no account was created',
    ]);
    assert.equal(await canLogIn('judy', 'pw-judy'), false);
    // From standard input too.
    const stdin = await cli(['register', '--file', '-'], 'ivan,localhost,pw-ivan\n');
    assert.equal(stdin.code, 0, stdin.stderr);
    assert.ok(await canLogIn('ivan', 'pw-ivan'));
  });

  test('wrong invocations get a usage error in Petrel\'s words: no stack trace, no library message', async () => {
    const cases: Array<[string[], RegExp, number]> = [
      [['register'], /^petrel: expected USER DOMAIN \[PASSWORD\], or --file CSV\nusage:/, 2],
      [['register', 'only-user'], /^petrel: expected USER DOMAIN \[PASSWORD\], or --file CSV\nusage:/, 2],
      [['register', 'a', 'localhost', 'pw', 'extra'], /^petrel: expected USER DOMAIN \[PASSWORD\], or --file CSV\nusage:/, 2],
      [['register', '--frobnicate', 'a', 'localhost'], /^petrel: unknown option --frobnicate\nusage:/, 2],
      [['register', 'a', 'localhost', 'pw', '--file'], /^petrel: option (-f|--file) needs a value\nusage:/, 2],
      [['register', '--file', 'users.csv', 'a', 'localhost'], /^petrel: register --file takes no USER, DOMAIN or PASSWORD\nusage:/, 2],
      [['register', '--file', '/nonexistent/users.csv'], /^petrel: \/nonexistent\/users\.csv does not exist\n$/, 1],
      [['register', '', 'localhost', 'pw'], /^petrel: the user name is empty\n$|^petrel: invalid user name/, 1],
      [['register', 'a', 'localhost', 'pw', '-c'], /^petrel: option -c needs a value\nusage:/, 2],
      [['frobnicate'], /^petrel: unknown command "frobnicate"\nusage:/, 2],
    ];
    for (const [args, stderr, code] of cases) {
      // -c comes last from cli(); "-c" with no value is run without it.
      const r = args.at(-1) === '-c' ? await bare(args) : await cli(args);
      assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, stderr, args.join(' '));
      assert.doesNotMatch(r.stderr, /\n\s+at |ERR_[A-Z_]+|To specify a positional|TypeError|\.ts:\d+/, args.join(' '));
      assert.equal(r.stdout, '');
    }
  });
});

/** `petrel <args>` with no -c added. */
function bare(args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: REPO_ROOT, env: testEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}
