import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createLogger } from '@pgkeep/core';
import { AdvisoryLocks, type HeldLock, lockResources, parseDatabaseUrl } from '@pgkeep/pg';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { token } from './support/api.js';
import { isRunning, root } from './support/processes.js';
import { createTestEnv, type TestEnv, urlWithDatabase } from './support/test-env.js';
import type { LogLine } from './support/worker-process.js';

/**
 * `npm start` as a supervisor or a terminal multiplexer stops it: a signal to the npm process
 * alone. Whatever the signal, the API and the worker under it stop gracefully and no process of
 * the tree is left; a second signal stops them at once; SIGKILL of npm takes them down too.
 */

let env: TestEnv;
let scratch: string;

beforeAll(async () => {
  env = await createTestEnv('npmstart');
  scratch = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-npmstart-'));
});

afterAll(async () => {
  await env?.cleanup();
  await rm(scratch, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Every descendant of `pid`, with its command line (ps; none: an empty list). */
function descendantsOf(pid: number): { pid: number; args: string }[] {
  const out = execFileSync('ps', ['-eo', 'pid=,ppid=,args='], { encoding: 'utf8' });
  const rows = out
    .trim()
    .split('\n')
    .map((line) => {
      const [child, parent, ...args] = line.trim().split(/\s+/);
      return { pid: Number(child), ppid: Number(parent), args: args.join(' ') };
    });
  const found: { pid: number; args: string }[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const parent = queue.shift() as number;
    for (const row of rows.filter((candidate) => candidate.ppid === parent)) {
      found.push({ pid: row.pid, args: row.args });
      queue.push(row.pid);
    }
  }
  return found;
}

/** `npm start` in its own process group, as a service manager runs it, with its logs read. */
class NpmStart {
  readonly child: ChildProcess;
  readonly lines: LogLine[] = [];
  stderr = '';
  /** The processes under npm once the service is up (start.mjs, API, worker). */
  tree: { pid: number; args: string }[] = [];

  constructor(
    envFile: string,
    readonly port: number,
  ) {
    this.child = spawn('npm', ['start', '--', '--env-file', envFile], {
      cwd: root,
      detached: true,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: process.env.HOME ?? '/tmp',
        npm_config_update_notifier: 'false',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let pending = '';
    this.child.stdout?.setEncoding('utf8');
    this.child.stdout?.on('data', (chunk: string) => {
      pending += chunk;
      let newline = pending.indexOf('\n');
      while (newline !== -1) {
        const text = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        newline = pending.indexOf('\n');
        try {
          this.lines.push(JSON.parse(text) as LogLine);
        } catch {
          this.lines.push({ msg: text });
        }
      }
    });
    this.child.stderr?.setEncoding('utf8');
    this.child.stderr?.on('data', (chunk: string) => {
      this.stderr += chunk;
    });
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error('npm did not start');
    return this.child.pid;
  }

  output(): string {
    return `stderr: ${this.stderr}\nstdout: ${this.lines.map((line) => JSON.stringify(line)).join('\n')}`;
  }

  /** Until the API answers its health check and the worker has started. */
  async ready(): Promise<void> {
    await vi.waitFor(
      async () => {
        const response = await fetch(`http://127.0.0.1:${this.port}/api/backup/health`);
        expect([200, 503]).toContain(response.status);
        expect(this.logged('pgkeep-worker', 'worker started')).toBe(true);
      },
      { timeout: 60_000, interval: 200 },
    );
    this.tree = descendantsOf(this.pid);
    const has = (pattern: RegExp) => this.tree.some((process) => pattern.test(process.args));
    expect(has(/scripts\/start\.mjs/), JSON.stringify(this.tree)).toBe(true);
    expect(has(/apps\/api\/dist\/main\.js/), JSON.stringify(this.tree)).toBe(true);
    expect(has(/apps\/worker\/dist\/main\.js/), JSON.stringify(this.tree)).toBe(true);
  }

  logged(name: string, msg: string | RegExp): boolean {
    return this.lines.some(
      (line) =>
        line.name === name &&
        (typeof msg === 'string' ? line.msg === msg : msg.test(line.msg ?? '')),
    );
  }

  /** npm and every process that was under it. */
  pids(): number[] {
    return [this.pid, ...this.tree.map((process) => process.pid)];
  }

  async running(): Promise<number[]> {
    const alive: number[] = [];
    for (const pid of this.pids()) if (await isRunning(pid)) alive.push(pid);
    return alive;
  }

  /** Bounded poll until no process of the tree is left; how long that took. */
  async allGone(timeoutMs: number): Promise<number> {
    const started = Date.now();
    await vi.waitFor(async () => expect(await this.running(), this.output()).toEqual([]), {
      timeout: timeoutMs,
      interval: 100,
    });
    return Date.now() - started;
  }

  async kill(): Promise<void> {
    for (const pid of await this.running()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
  }
}

const started: NpmStart[] = [];

afterEach(async () => {
  for (const npm of started.splice(0)) await npm.kill();
});

async function npmStart(extra: Record<string, string> = {}): Promise<NpmStart> {
  const port = await freePort();
  const file = path.join(scratch, `env-${port}`);
  const settings = { ...env.env, HOST: '127.0.0.1', PORT: String(port), ...extra };
  await writeFile(
    file,
    Object.entries(settings)
      .map(([key, value]) => `${key}=${value}`)
      .join('\n'),
  );
  const npm = new NpmStart(file, port);
  started.push(npm);
  await npm.ready();
  return npm;
}

function expectGracefulStop(npm: NpmStart) {
  expect(npm.logged('pgkeep-worker', 'shutting down'), npm.output()).toBe(true);
  expect(npm.logged('pgkeep-worker', 'worker stopped'), npm.output()).toBe(true);
  expect(npm.logged('pgkeep-api', 'shutting down'), npm.output()).toBe(true);
  expect(npm.logged('pgkeep-api', 'api stopped'), npm.output()).toBe(true);
  expect(npm.logged('pgkeep-worker', 'second signal: exiting now')).toBe(false);
}

describe('stopping npm start', () => {
  it.each(['SIGTERM', 'SIGINT', 'SIGHUP'] as const)(
    '%s to the npm process alone stops the API and the worker gracefully, leaving no process',
    async (signal) => {
      const npm = await npmStart();
      process.kill(npm.pid, signal);
      await npm.allGone(20_000);
      expectGracefulStop(npm);
    },
  );

  it('SIGINT to the whole process group (a Ctrl-C at a terminal) is one graceful stop', async () => {
    // The terminal signals npm and this script alike, and npm passes its copy on: the script
    // receives it twice and must still stop gracefully, not at once.
    const npm = await npmStart();
    process.kill(-npm.pid, 'SIGINT');
    await npm.allGone(20_000);
    expectGracefulStop(npm);
  });

  it('a second SIGTERM stops them at once, while a job holds the graceful stop back', async () => {
    // A backup waits for a lock the test holds: a graceful stop would wait for it up to
    // SHUTDOWN_TIMEOUT_MS (a minute here); the second signal must not.
    const locks = new AdvisoryLocks(
      parseDatabaseUrl(urlWithDatabase(env.serverUrl, env.env.MAINTENANCE_DATABASE as string)),
      env.env.LOCK_NAMESPACE as string,
      createLogger('silent', 'npm-start-test'),
    );
    let held: HeldLock | undefined;
    try {
      held = await locks.acquire(lockResources.storageWrite, 'exclusive', { timeoutMs: 10_000 });
      const npm = await npmStart({ SHUTDOWN_TIMEOUT_MS: '60000', LOCK_TIMEOUT_MS: '120000' });
      const queued = await fetch(`http://127.0.0.1:${npm.port}/api/backup`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token()}`, 'content-type': 'application/json' },
        body: '{}',
      });
      expect(queued.status).toBe(202);
      await vi.waitFor(() => expect(npm.logged('pgkeep-worker', 'job started')).toBe(true), {
        timeout: 30_000,
        interval: 50,
      });

      process.kill(npm.pid, 'SIGTERM');
      await vi.waitFor(() => expect(npm.stderr).toMatch(/again to stop at once/), {
        timeout: 10_000,
        interval: 50,
      });
      // Still stopping gracefully: the job holds the worker.
      expect(npm.logged('pgkeep-worker', 'shutting down'), npm.output()).toBe(true);
      expect(npm.logged('pgkeep-worker', 'worker stopped')).toBe(false);
      expect(await npm.running()).toContain(npm.pid);

      process.kill(npm.pid, 'SIGTERM');
      const tookMs = await npm.allGone(10_000);
      expect(tookMs).toBeLessThan(10_000);
      expect(npm.logged('pgkeep-worker', 'second signal: exiting now'), npm.output()).toBe(true);
      expect(npm.logged('pgkeep-worker', 'worker stopped')).toBe(false);
    } finally {
      await held?.release();
    }
  });

  it('SIGKILL of the npm process: the API and the worker stop within seconds, gracefully', async () => {
    const npm = await npmStart();
    process.kill(npm.pid, 'SIGKILL');
    await npm.allGone(20_000);
    expectGracefulStop(npm);
  });
});
