// Starts the API and the worker side by side against the configured PostgreSQL and Redis.
// On first run it creates .env from .env.example with a random JWT_SECRET.
//
//   node scripts/start.mjs         builds (scripts/build.mjs, about a second), runs apps/*/dist
//   node scripts/start.mjs --dev   runs the TypeScript sources through tsx, no build, and
//                                  writes readable log lines (LOG_FORMAT=pretty unless set)
//   node scripts/start.mjs --env-file <file>   reads <file> instead of .env (never created)
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    dev: { type: 'boolean', default: false },
    'env-file': { type: 'string' },
  },
});
const envFile = values['env-file'] ? path.resolve(values['env-file']) : path.join(root, '.env');
if (!values['env-file'] && !existsSync(envFile)) {
  const secret = randomBytes(36).toString('base64url');
  const example = readFileSync(path.join(root, '.env.example'), 'utf8');
  writeFileSync(envFile, example.replace(/^JWT_SECRET=$/m, `JWT_SECRET=${secret}`), {
    mode: 0o600,
    flag: 'wx',
  });
  process.stdout.write(
    'created .env with a random JWT_SECRET; `npm run token` prints an admin token\n',
  );
}
// Variables already set in the environment win over the file's.
process.loadEnvFile(envFile);
// A person reads the logs of `npm run dev`; `npm start` keeps the JSON lines a collector reads.
// An empty value counts as unset, as everywhere in the configuration.
if (values.dev && !process.env.LOG_FORMAT?.trim()) process.env.LOG_FORMAT = 'pretty';

const apps = ['worker', 'api'];
if (!values.dev) {
  // Imported here: --dev needs no esbuild.
  const { runBuild } = await import('./build.mjs').catch((error) => {
    if (error?.code === 'ERR_MODULE_NOT_FOUND' && /'esbuild'/.test(error.message)) {
      // A production install (`npm ci --omit=dev`, or NODE_ENV=production) leaves it out.
      process.stderr.write('esbuild is not installed: run `npm ci` (with dev dependencies)\n');
      process.exit(1);
    }
    throw error;
  });
  if (!(await runBuild(apps))) process.exit(1);
}
const entry = (app) =>
  values.dev
    ? ['--import', 'tsx', path.join(root, 'apps', app, 'src', 'main.ts')]
    : // Stack traces point at the .ts sources through the bundles' source maps.
      ['--enable-source-maps', path.join(root, 'apps', app, 'dist', 'main.js')];

/**
 * `setpriv --pdeathsig SIGTERM` (Linux, util-linux) before each app: should this script die
 * without stopping them (SIGKILL, a crash), the kernel sends them SIGTERM, their own graceful
 * stop. Elsewhere, or without setpriv, they start directly.
 */
function deathSignalPrefix() {
  if (process.platform !== 'linux') return [];
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(path.delimiter)) {
    const candidate = path.join(dir, 'setpriv');
    if (existsSync(candidate)) return [candidate, '--pdeathsig', 'SIGTERM', '--'];
  }
  return [];
}
const prefix = deathSignalPrefix();

// How this script is stopped. npm runs it as `exec node scripts/start.mjs` (package.json), so
// npm's own child is this script: npm passes SIGINT and SIGTERM on to it and waits for it to
// exit. A Ctrl-C at a terminal arrives twice (from the terminal, and passed on by npm): a
// signal within DUPLICATE_MS of the first is that same stop; a later one stops the apps at
// once (their own "second signal"). SIGHUP (a closed terminal or multiplexer pane) stops like
// SIGTERM: the apps would die of it at once. If the process that started this one dies
// without passing anything on (SIGKILL of npm), this script notices that its parent changed.
const DUPLICATE_MS = 500;
let stopping = false;
let forceable = false;
const running = () =>
  children.filter((child) => child.exitCode === null && child.signalCode === null);
const forward = (signal) => (signal === 'SIGINT' ? 'SIGINT' : 'SIGTERM');

function stop(signal, reason = signal) {
  if (!stopping) {
    stopping = true;
    process.stderr.write(`${reason}: stopping the API and the worker\n`);
    for (const child of running()) child.kill(forward(signal));
    setTimeout(() => {
      forceable = true;
      if (running().length > 0) {
        process.stderr.write(
          `still stopping (a running job may take up to SHUTDOWN_TIMEOUT_MS): send ${signal} again to stop at once\n`,
        );
      }
    }, DUPLICATE_MS).unref();
    return;
  }
  if (!forceable) return;
  process.stderr.write(`${signal} again: stopping at once\n`);
  for (const child of running()) child.kill(forward(signal));
}

const children = apps.map((app) => {
  // One process per app, each in its own process group: a Ctrl-C at the terminal reaches
  // this script alone, which passes it on once. (Reaching the apps twice would be their
  // "second signal: exit now".)
  const command = [...prefix, process.execPath, ...entry(app)];
  const child = spawn(command[0], command.slice(1), {
    cwd: root,
    stdio: 'inherit',
    env: process.env,
    detached: true,
  });
  child.on('exit', (code, signal) => {
    if (stopping) return;
    // One process gone means the service is broken: stop the other (once) and report.
    process.exitCode = code || (signal ? 1 : 0);
    stop('SIGTERM', `the ${app} exited (${code ?? signal})`);
  });
  return child;
});

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => stop(signal));

const parent = process.ppid;
const parentWatch = setInterval(() => {
  if (process.ppid === parent) return;
  clearInterval(parentWatch);
  stop('SIGTERM', 'the process that started this one is gone');
}, 500);
parentWatch.unref();

// Whatever ends this script, the apps must not outlive it.
process.on('exit', () => {
  for (const child of running()) child.kill('SIGKILL');
});
