import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSigner } from 'fast-jwt';
import { Redis } from 'ioredis';
import { serverUrl } from './db.js';
import { sleep } from './util.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

let built: Promise<void> | undefined;

/**
 * The apps built once per bench process (scripts/build.mjs, under a second), as `npm start`
 * and the Docker image run them: what is measured is what ships.
 */
export function buildAppsOnce(): Promise<void> {
  built ??= new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [path.join(ROOT, 'scripts/build.mjs')],
      { cwd: ROOT },
      (error, _stdout, stderr) =>
        error ? reject(new Error(`scripts/build.mjs failed:\n${stderr}`)) : resolve(),
    );
  });
  return built;
}

/**
 * A node process, its output in a log file: a built app (`.js`, with its source maps, as
 * operators run it) or a bench helper in TypeScript (`.ts`, through tsx).
 */
export function startNodeApp(
  entry: string,
  env: Record<string, string>,
  logFile: string,
  nodeArgs: string[] = [],
): ChildProcess {
  const loader = entry.endsWith('.ts') ? ['--import', 'tsx'] : ['--enable-source-maps'];
  const child = spawn(process.execPath, [...nodeArgs, ...loader, entry], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = createWriteStream(logFile, { flags: 'a' });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  return child;
}

export async function stopChild(child: ChildProcess, timeoutMs = 15_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(timer);
}

export interface JobView {
  jobId: string;
  state: 'queued' | 'running' | 'completed' | 'failed';
  progress: Record<string, unknown> | null;
  result: Record<string, unknown> | null;
  error: { code: string; message: string } | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

export interface PgkeepStack {
  baseUrl: string;
  token: string;
  /** The HS256 secret the API checks tokens with. */
  secret: string;
  prefix: string;
  backupDir: string;
  database: string;
  api: ChildProcess;
  worker: ChildProcess;
  request<T = unknown>(
    method: string,
    url: string,
    body?: unknown,
  ): Promise<{ status: number; body: T }>;
  /** POST that must answer 202; the job id. */
  enqueue(url: string, body?: unknown): Promise<string>;
  /**
   * Polls the job every `intervalMs` until it completed (or throws when it failed); `phases`
   * gets the Date.now() at which each progress phase was first seen.
   */
  waitForJob(
    jobId: string,
    options?: { intervalMs?: number; timeoutMs?: number; phases?: Record<string, number> },
  ): Promise<JobView>;
  stop(): Promise<void>;
}

/**
 * The real pgkeep: the worker and the API as two processes with an environment of their own
 * (database, queue prefix, lock namespace, backup directory, secret, port), driven over HTTP.
 */
export async function startPgkeep(options: {
  database: string;
  workDir: string;
  logLevel?: string;
  apiNodeArgs?: string[];
  workerNodeArgs?: string[];
  /** Settings over the bench's own (TARGETS_FILE, BACKUP_CONCURRENCY…), for both processes. */
  env?: Record<string, string>;
}): Promise<PgkeepStack> {
  const prefix = `pgkeep-bench-${randomBytes(4).toString('hex')}`;
  const secret = randomBytes(36).toString('base64url');
  const port = await freePort();
  const backupDir = path.join(options.workDir, 'backups');
  const env: Record<string, string> = {
    NODE_ENV: 'production',
    LOG_LEVEL: options.logLevel ?? 'warn',
    DATABASE_URL: serverUrl(options.database),
    REDIS_URL,
    QUEUE_PREFIX: prefix,
    LOCK_NAMESPACE: prefix,
    BACKUP_DIR: backupDir,
    JWT_SECRET: secret,
    HOST: '127.0.0.1',
    PORT: String(port),
    AUTO_BACKUP_ENABLED: 'false',
    BACKUP_CLEANUP_SCHEDULE: 'off',
    VERIFY_SCHEDULE: 'off',
    BACKUP_ATTEMPTS: '1',
    // The readiness poll below must see the worker the moment it announces itself.
    HEALTH_CACHE_MS: '0',
    ...options.env,
  };
  await buildAppsOnce();
  const worker = startNodeApp(
    path.join(ROOT, 'apps/worker/dist/main.js'),
    env,
    path.join(options.workDir, 'worker.log'),
    options.workerNodeArgs ?? [],
  );
  const api = startNodeApp(
    path.join(ROOT, 'apps/api/dist/main.js'),
    env,
    path.join(options.workDir, 'api.log'),
    options.apiNodeArgs ?? [],
  );
  const token = createSigner({ key: secret, algorithm: 'HS256', expiresIn: 24 * 3600 * 1000 })({
    sub: 'bench@pgkeep',
    role: 'SUPER_ADMIN',
  });
  const baseUrl = `http://127.0.0.1:${port}`;

  const request = async <T>(method: string, url: string, body?: unknown) => {
    const response = await fetch(`${baseUrl}${url}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: response.status, body: (await response.json()) as T };
  };

  const stack: PgkeepStack = {
    baseUrl,
    token,
    secret,
    prefix,
    backupDir,
    database: options.database,
    api,
    worker,
    request,
    async enqueue(url, body) {
      const response = await request<{ data?: { jobId: string } }>('POST', url, body ?? {});
      if (response.status !== 202 || !response.body.data) {
        throw new Error(`POST ${url}: ${response.status} ${JSON.stringify(response.body)}`);
      }
      return response.body.data.jobId;
    },
    async waitForJob(jobId, options = {}) {
      const intervalMs = options.intervalMs ?? 50;
      const deadline = Date.now() + (options.timeoutMs ?? 3_600_000);
      for (;;) {
        const { body } = await request<{ data: JobView }>('GET', `/api/jobs/${jobId}`);
        const job = body.data;
        const phase = job.progress?.phase;
        if (options.phases && typeof phase === 'string' && !(phase in options.phases)) {
          options.phases[phase] = Date.now();
        }
        if (job.state === 'completed') return job;
        if (job.state === 'failed') {
          throw new Error(`job ${jobId} failed: ${job.error?.code} ${job.error?.message}`);
        }
        if (Date.now() > deadline) throw new Error(`job ${jobId} still ${job.state}`);
        await sleep(intervalMs);
      }
    },
    async stop() {
      await Promise.all([stopChild(api), stopChild(worker)]);
      // pgkeep keys its Redis data under `{QUEUE_PREFIX}` (a Redis Cluster hash tag).
      await deleteRedisPrefix(`{${prefix}}`);
      await deleteRedisPrefix(prefix);
    },
  };

  // Ready: the API answers and the worker has announced itself (heartbeat).
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (api.exitCode !== null || worker.exitCode !== null) {
      await stack.stop();
      throw new Error(`pgkeep did not start; see ${options.workDir}/api.log and worker.log`);
    }
    try {
      const health = await fetch(`${baseUrl}/api/backup/health`);
      const body = (await health.json()) as {
        data?: { checks?: { workers?: { ok?: boolean } } };
      };
      if (body.data?.checks?.workers?.ok === true) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stack.stop();
      throw new Error('pgkeep did not become healthy within 60 s');
    }
    await sleep(100);
  }
  return stack;
}

export async function deleteRedisPrefix(prefix: string): Promise<number> {
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  let deleted = 0;
  try {
    await redis.connect();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) deleted += await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
  return deleted;
}
