import { type ChildProcess, spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { postJob, startApi, type TestApi, waitForJob } from './support/api.js';
import { appArgs, root } from './support/processes.js';
import { createTestEnv, JWT_SECRET, type TestEnv, withClient } from './support/test-env.js';
import { type LogLine, startWorker, type WorkerProcess } from './support/worker-process.js';

/**
 * The entry points as operators run them (`node apps/<app>/dist/main.js`, built by the
 * integration globalSetup): a bad
 * setting stops the process at once with a message naming the key and never its value, a
 * SIGTERM shuts a healthy process down cleanly with exit code 0, and no log line carries a
 * password.
 */

const entries = { api: 'api', worker: 'worker' } as const;

/** A spawned entry point; stdout is kept raw and as pino lines, stderr raw. */
class EntryProcess {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly lines: LogLine[] = [];
  private readonly listeners = new Set<(line: LogLine) => void>();
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(entry: keyof typeof entries, env: Record<string, string>) {
    this.child = spawn(process.execPath, appArgs(entries[entry]), {
      cwd: root,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let pending = '';
    this.child.stdout?.setEncoding('utf8');
    this.child.stdout?.on('data', (chunk: string) => {
      this.stdout += chunk;
      pending += chunk;
      let newline = pending.indexOf('\n');
      while (newline !== -1) {
        const text = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        newline = pending.indexOf('\n');
        let line: LogLine;
        try {
          line = JSON.parse(text) as LogLine;
        } catch {
          line = { msg: text };
        }
        this.lines.push(line);
        for (const listener of this.listeners) listener(line);
      }
    });
    this.child.stderr?.setEncoding('utf8');
    this.child.stderr?.on('data', (chunk: string) => {
      this.stderr += chunk;
    });
    // 'close', not 'exit': all output has been read by then.
    this.exited = new Promise((resolve) => {
      this.child.once('close', (code, signal) => resolve({ code, signal }));
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The first log line `match` accepts; fails when the process exits or time runs out. */
  waitForLine(match: (line: LogLine) => boolean, timeoutMs = 30_000): Promise<LogLine> {
    const seen = this.lines.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const done = (error?: Error, line?: LogLine) => {
        clearTimeout(timer);
        this.listeners.delete(listener);
        if (error) reject(error);
        else resolve(line as LogLine);
      };
      const timer = setTimeout(
        () => done(new Error(`no matching log line within ${timeoutMs} ms: ${this.output()}`)),
        timeoutMs,
      );
      const listener = (line: LogLine) => {
        if (match(line)) done(undefined, line);
      };
      this.listeners.add(listener);
      void this.exited.then(({ code, signal }) => {
        if (this.listeners.has(listener)) {
          done(new Error(`exited (${code ?? signal}) first: ${this.output()}`));
        }
      });
    });
  }

  /** Resolves with the exit, or fails when the process is still running after `timeoutMs`. */
  async exit(timeoutMs = 30_000) {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        this.exited,
        new Promise<never>((_resolve, reject) => {
          timer = setTimeout(
            () => reject(new Error(`still running after ${timeoutMs} ms: ${this.output()}`)),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  output(): string {
    return `stdout: ${this.stdout}\nstderr: ${this.stderr}`;
  }

  async kill(): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }
}

const spawned: EntryProcess[] = [];
const envs: TestEnv[] = [];
const apis: TestApi[] = [];
const workers: WorkerProcess[] = [];

function start(entry: keyof typeof entries, env: Record<string, string>): EntryProcess {
  const child = new EntryProcess(entry, env);
  spawned.push(child);
  return child;
}

afterAll(async () => {
  for (const child of spawned) await child.kill();
  for (const worker of workers) await worker.kill();
  for (const api of apis) await api.close();
  for (const env of envs) await env.cleanup();
});

// Valid everywhere, so each case below fails on its own key alone. Nothing is reached: a bad
// setting must stop the process before it connects to anything.
const validEnv = {
  DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/postgres',
  REDIS_URL: 'redis://127.0.0.1:6379',
  JWT_SECRET,
};

describe('a bad setting stops the process at start, naming the key and not the value', () => {
  it.each([
    {
      entry: 'worker',
      setting: 'BACKUP_CONCURRENCY=abc',
      env: { ...validEnv, BACKUP_CONCURRENCY: 'abc' },
      key: 'BACKUP_CONCURRENCY',
      secret: undefined,
    },
    {
      entry: 'worker',
      setting: 'a mysql:// DATABASE_URL with a password',
      env: { ...validEnv, DATABASE_URL: 'mysql://u:hunter2@h/db' },
      key: 'DATABASE_URL',
      secret: 'hunter2',
    },
    {
      entry: 'api',
      setting: 'a JWT_SECRET shorter than 32 characters',
      env: { ...validEnv, JWT_SECRET: 'short' },
      key: 'JWT_SECRET',
      secret: 'short',
    },
    {
      entry: 'api',
      setting: 'neither JWT_SECRET nor JWT_PUBLIC_KEY',
      env: { DATABASE_URL: validEnv.DATABASE_URL, REDIS_URL: validEnv.REDIS_URL },
      key: 'JWT_SECRET',
      secret: undefined,
    },
    {
      entry: 'api',
      setting: 'PORT=70000',
      env: { ...validEnv, PORT: '70000' },
      key: 'PORT',
      secret: undefined,
    },
  ] as const)('$entry with $setting exits 1 naming $key', async ({ entry, env, key, secret }) => {
    const child = start(entry, env);
    const { code } = await child.exit();
    expect(code, child.output()).toBe(1);
    expect(child.stderr).toContain(key);
    if (secret) {
      expect(child.stdout).not.toContain(secret);
      expect(child.stderr).not.toContain(secret);
    }
  });
});

describe('graceful shutdown', () => {
  it('an idle worker exits 0 after one SIGTERM and says it stopped', async () => {
    const env = await createTestEnv('proc_worker');
    envs.push(env);
    const worker = start('worker', env.env);
    await worker.waitForLine((line) => line.msg === 'worker started');

    worker.child.kill('SIGTERM');
    const { code, signal } = await worker.exit(20_000);
    expect({ code, signal }, worker.output()).toEqual({ code: 0, signal: null });
    expect(worker.lines.map((line) => line.msg)).toContain('worker stopped');
  });

  it('the API listens, answers health over HTTP, and exits 0 after one SIGTERM', async () => {
    const env = await createTestEnv('proc_api');
    envs.push(env);
    const api = start('api', { ...env.env, PORT: '0' });
    const listening = await api.waitForLine(
      (line) => typeof line.msg === 'string' && line.msg.startsWith('Server listening at '),
    );
    const address = /Server listening at (http:\/\/\S+)/.exec(String(listening.msg))?.[1];
    expect(address, String(listening.msg)).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

    const response = await fetch(`${address}/api/backup/health`);
    // No worker runs for this env's prefix, so it is 503; what matters here is the answer.
    expect([200, 503]).toContain(response.status);
    const body = (await response.json()) as {
      data: { checks: Record<string, { ok: boolean }>; failing: string[] };
    };
    expect(Object.keys(body.data.checks).sort()).toEqual([
      'database',
      'pgDump',
      'redis',
      'storage',
      'workers',
    ]);
    expect(body.data.checks.database?.ok).toBe(true);

    api.child.kill('SIGTERM');
    const { code, signal } = await api.exit(20_000);
    expect({ code, signal }, api.output()).toEqual({ code: 0, signal: null });
    expect(api.lines.map((line) => line.msg)).toContain('shutting down');
  });
});

describe('logs carry no secrets', () => {
  it('a worker whose DATABASE_URL has a password never prints it, nor puts it in the result', async () => {
    const env = await createTestEnv('proc_leak');
    envs.push(env);
    await withClient(env.databaseUrl, (client) =>
      client.query(
        'CREATE TABLE "Note" (id serial PRIMARY KEY, body text); INSERT INTO "Note" (body) VALUES (\'a\'), (\'b\')',
      ),
    );
    const password = 'pw-should-not-leak';
    // Trust authentication ignores the password, so the worker works with it and carries it
    // into every connection it opens and every pg_dump it runs.
    const withPassword = new URL(env.databaseUrl);
    withPassword.password = password;
    const leakEnv = { ...env.env, DATABASE_URL: withPassword.toString(), LOG_LEVEL: 'debug' };

    const [api, worker] = await Promise.all([startApi(leakEnv), startWorker(leakEnv)]);
    apis.push(api);
    workers.push(worker);

    const jobId = await postJob(api, '/api/backup', {});
    const job = await waitForJob(api, jobId);
    expect(job.error).toBeNull();
    expect(job.state).toBe('completed');
    expect(JSON.stringify(job)).not.toContain(password);

    const manifests = (await readdir(env.backupDir)).filter((file) => file.endsWith('.json'));
    expect(manifests).toHaveLength(1);
    for (const file of manifests) {
      expect(await readFile(path.join(env.backupDir, file), 'utf8')).not.toContain(password);
    }

    // Shutdown logs too.
    await worker.stop();
    expect(worker.lines.map((line) => line.msg)).toContain('job completed');
    expect(JSON.stringify(worker.lines)).not.toContain(password);
    expect(worker.stderr.join('')).not.toContain(password);
  });
});
