import { readdir } from 'node:fs/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { adminHeaders, postJob, startApi, type TestApi, waitForJob } from './support/api.js';
import { childrenOf, isRunning } from './support/processes.js';
import { createTestEnv, type TestEnv, withClient } from './support/test-env.js';
import { startWorker, type WorkerProcess } from './support/worker-process.js';

let env: TestEnv;
let api: TestApi;
const workers: WorkerProcess[] = [];

/** gzip -9 in-process makes a ~200 MB dump take seconds: long enough to interrupt for real. */
const slowBackups = { BACKUP_COMPRESSION: 'gzip', BACKUP_GZIP_LEVEL: '9' };

async function pgDumpSessions(): Promise<number> {
  return withClient(env.serverUrl, async (client) => {
    const { rows } = await client.query<{ n: string }>(
      "SELECT count(*)::text AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'pgkeep'",
      [env.name],
    );
    return Number(rows[0]?.n ?? 0);
  });
}

async function listed(): Promise<number> {
  const response = await api.app.inject({
    method: 'GET',
    url: '/api/backup',
    headers: adminHeaders(),
  });
  return (response.json() as { count: number }).count;
}

async function startSlowBackup(worker: WorkerProcess) {
  const jobId = await postJob(api, '/api/backup', {});
  await waitForJob(
    api,
    jobId,
    (job) => job.state === 'running' && (job.progress?.bytesWritten ?? 0) > 0,
    30_000,
  );
  const pgDump = childrenOf(worker.pid).find((child) => child.command === 'pg_dump');
  expect(pgDump, 'pg_dump runs as a child of the worker').toBeDefined();
  const partials = (await readdir(env.backupDir)).filter((file) => file.endsWith('.partial'));
  expect(partials).toHaveLength(1);
  return { jobId, pgDumpPid: pgDump?.pid ?? -1, partial: partials[0] ?? '' };
}

beforeAll(async () => {
  env = await createTestEnv('crash', slowBackups);
  await withClient(env.databaseUrl, (client) =>
    client.query(`CREATE TABLE "WhatsappMessage" AS
      SELECT g AS id, md5(g::text) || repeat(md5((g * 7)::text), 4) AS body
      FROM generate_series(1, 1000000) g`),
  );
  api = await startApi(env.env);
});

afterAll(async () => {
  await Promise.all(workers.map((worker) => worker.kill()));
  await Promise.all(
    Object.values(api?.services.queues ?? {}).map((queue) => queue.obliterate({ force: true })),
  );
  await api?.close();
  await env?.cleanup();
});

describe('a worker killed in the middle of a backup', () => {
  it('leaves no orphan pg_dump, no listed backup, and no partial file once a worker restarts; the job is retried', async () => {
    const first = await startWorker(env.env);
    workers.push(first);
    const { jobId, pgDumpPid, partial } = await startSlowBackup(first);

    await first.kill();
    // pg_dump dies with its worker (pdeathsig) and its database session ends with it.
    await vi.waitFor(async () => expect(await isRunning(pgDumpPid)).toBe(false), {
      timeout: 10_000,
      interval: 50,
    });
    await vi.waitFor(async () => expect(await pgDumpSessions()).toBe(0), {
      timeout: 10_000,
      interval: 50,
    });
    expect(await listed()).toBe(0);
    expect(await readdir(env.backupDir)).toContain(partial);

    const second = await startWorker(env.env);
    workers.push(second);
    expect(await readdir(env.backupDir)).not.toContain(partial);
    expect(
      second.lines.some((line) => line.msg === 'removed leftovers of unfinished backups'),
    ).toBe(true);

    // The dead worker's job lock expires; the new worker finds the job stalled and runs it again.
    const job = await waitForJob(api, jobId, undefined, 90_000);
    expect(job.state, JSON.stringify(job.error)).toBe('completed');
    expect(await listed()).toBe(1);
    const files = await readdir(env.backupDir);
    expect(files.filter((file) => file.endsWith('.partial'))).toEqual([]);
    expect(files).toHaveLength(2);
    await second.stop();
  });
});

describe('a pg_dump that is not writing', () => {
  it('dies with its worker too: blocked on a table lock, it gets no SIGPIPE to end it', async () => {
    const blocker = new pg.Client({ connectionString: env.databaseUrl });
    await blocker.connect();
    const worker = await startWorker(env.env);
    workers.push(worker);
    try {
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE "WhatsappMessage" IN ACCESS EXCLUSIVE MODE');
      const jobId = await postJob(api, '/api/backup', {});
      await waitForJob(api, jobId, (job) => job.state === 'running', 10_000);
      let pgDumpPid = -1;
      await vi.waitFor(
        () => {
          pgDumpPid =
            childrenOf(worker.pid).find((child) => child.command === 'pg_dump')?.pid ?? -1;
          expect(pgDumpPid).toBeGreaterThan(0);
        },
        { timeout: 10_000, interval: 50 },
      );
      await worker.kill();
      await vi.waitFor(async () => expect(await isRunning(pgDumpPid)).toBe(false), {
        timeout: 10_000,
        interval: 50,
      });
      await vi.waitFor(async () => expect(await pgDumpSessions()).toBe(0), {
        timeout: 10_000,
        interval: 50,
      });
    } finally {
      await blocker.end();
    }
  });
});

describe('a worker stopped with SIGTERM in the middle of a backup', () => {
  it('aborts the backup after the shutdown deadline, removes its partial file, exits 0, and the job waits for a retry', async () => {
    const worker = await startWorker({ ...env.env, SHUTDOWN_TIMEOUT_MS: '1000' });
    workers.push(worker);
    const before = await listed();
    const { jobId, pgDumpPid } = await startSlowBackup(worker);

    worker.child.kill('SIGTERM');
    const exit = await worker.exited;
    expect(exit.code).toBe(0);
    expect(await isRunning(pgDumpPid)).toBe(false);
    expect((await readdir(env.backupDir)).filter((file) => file.endsWith('.partial'))).toEqual([]);
    expect(await listed()).toBe(before);
    expect(
      worker.lines.some((line) => line.msg === 'shutdown deadline: aborting running jobs'),
    ).toBe(true);

    const job = await waitForJob(api, jobId, (polled) => polled.attemptsMade >= 1, 10_000);
    expect(job.state).toBe('queued');
    expect(job.lastError?.code).toBe('JOB_ABORTED');
    expect(job.lastError?.message).toContain('worker shutting down');
  });
});
