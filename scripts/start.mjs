// Starts the API and the worker side by side against the configured PostgreSQL and Redis.
// On first run it creates .env from .env.example with a random JWT_SECRET.
//
//   node scripts/start.mjs         builds (scripts/build.mjs, about a second), runs apps/*/dist
//   node scripts/start.mjs --dev   runs the TypeScript sources through tsx, no build
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

const children = apps.map((app) => {
  // One process per app, each in its own process group: a Ctrl-C at the terminal reaches
  // this script alone, which passes it on once. (Reaching the apps twice would be their
  // "second signal: exit now".)
  const child = spawn(process.execPath, entry(app), {
    cwd: root,
    stdio: 'inherit',
    env: process.env,
    detached: true,
  });
  child.on('exit', (code, signal) => {
    // One process gone means the service is broken: stop the other and report.
    for (const other of children)
      if (other !== child && other.exitCode === null) other.kill('SIGTERM');
    if (!stopping) process.exitCode = code ?? (signal ? 1 : 0);
  });
  return child;
});

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    if (stopping) {
      // A second Ctrl-C: the apps' own "exit now".
      for (const child of children) if (child.exitCode === null) child.kill(signal);
      return;
    }
    stopping = true;
    for (const child of children) if (child.exitCode === null) child.kill(signal);
  });
}
// Whatever ends this script, the apps must not outlive it.
process.on('exit', () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
});
