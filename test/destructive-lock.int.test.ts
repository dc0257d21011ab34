import { spawn } from 'node:child_process';
import path from 'node:path';
import { createLogger } from '@pgkeep/core';
import { AdvisoryLocks, type HeldLock, lockResources, parseDatabaseUrl } from '@pgkeep/pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { getJob, postJob, startApi, type TestApi, waitForJob } from './support/api.js';
import { seedPanelSchema } from './support/panel-schema.js';
import { createTestEnv, type TestEnv, urlWithDatabase, withClient } from './support/test-env.js';
import { startWorker, type WorkerProcess } from './support/worker-process.js';

let env: TestEnv;
let api: TestApi;
let maintenanceUrl: string;
const workers: WorkerProcess[] = [];

function locks(): AdvisoryLocks {
  return new AdvisoryLocks(
    parseDatabaseUrl(maintenanceUrl),
    env.name,
    createLogger('silent', 'test'),
  );
}

/** Sessions of this test's namespace waiting on an advisory lock right now. */
async function waitingLockRequests(): Promise<number> {
  return withClient(maintenanceUrl, async (client) => {
    const { rows } = await client.query<{ n: string }>(
      "SELECT count(*)::text AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
    );
    return Number(rows[0]?.n ?? 0);
  });
}

beforeAll(async () => {
  env = await createTestEnv('lock');
  maintenanceUrl = urlWithDatabase(env.serverUrl, env.env.MAINTENANCE_DATABASE ?? 'postgres');
  await seedPanelSchema(env.databaseUrl, 100);
  api = await startApi(env.env);
  workers.push(...(await Promise.all([startWorker(env.env), startWorker(env.env)])));
});

afterAll(async () => {
  await Promise.all(workers.map((worker) => worker.stop()));
  await api?.close();
  await env?.cleanup();
});

describe('destructive jobs never overlap', () => {
  it('two workers racing destructive jobs run them one after the other', async () => {
    const backups: string[] = [];
    for (let i = 0; i < 4; i += 1) {
      const job = await waitForJob(api, await postJob(api, '/api/backup', {}));
      backups.push((job.result as { id: string }).id);
    }
    // Hold the lock ourselves so that both workers are provably inside a destructive job,
    // waiting, at the same moment; then let them go and see how they took turns.
    const gate = await locks().acquire(lockResources.destructive, 'exclusive', {
      timeoutMs: 5_000,
    });
    const jobIds = [
      await postJob(api, `DELETE /api/backup/${backups[0]}`),
      await postJob(api, '/api/backup/clean?keepLast=100'),
      await postJob(api, `DELETE /api/backup/${backups[1]}`),
      await postJob(api, '/api/backup/clean?keepLast=100'),
    ];
    await vi.waitFor(async () => expect(await waitingLockRequests()).toBe(2), {
      timeout: 20_000,
      interval: 50,
    });
    const states = await Promise.all(jobIds.map(async (jobId) => (await getJob(api, jobId)).state));
    expect(states.sort()).toEqual(['queued', 'queued', 'running', 'running']);
    await gate.release();

    const done = await Promise.all(jobIds.map((jobId) => waitForJob(api, jobId)));
    expect(done.map((job) => job.state)).toEqual([
      'completed',
      'completed',
      'completed',
      'completed',
    ]);
    const intervals = done
      .map((job) => (job.result as { lock: { acquiredAt: string; releasedAt: string } }).lock)
      .map((lock) => ({ from: Date.parse(lock.acquiredAt), to: Date.parse(lock.releasedAt) }))
      .sort((a, b) => a.from - b.from);
    for (let i = 1; i < intervals.length; i += 1) {
      expect(intervals[i]?.from).toBeGreaterThanOrEqual(
        intervals[i - 1]?.to ?? Number.POSITIVE_INFINITY,
      );
    }
    // Both workers did some of the work.
    const byWorker = workers.map(
      (worker) =>
        worker.lines.filter(
          (line) => line.msg === 'job completed' && jobIds.includes(String(line.jobId)),
        ).length,
    );
    expect(byWorker.every((count) => count > 0)).toBe(true);
  });

  it('a job that cannot get the lock in time fails that attempt with LOCK_TIMEOUT and is retried', async () => {
    const impatient = await startWorker({
      ...env.env,
      LOCK_TIMEOUT_MS: '1000',
      QUEUE_PREFIX: `${env.name}_b`,
    });
    const impatientApi = await startApi({ ...env.env, QUEUE_PREFIX: `${env.name}_b` });
    const gate = await locks().acquire(lockResources.destructive, 'exclusive', {
      timeoutMs: 5_000,
    });
    try {
      const jobId = await postJob(impatientApi, '/api/backup/clean?keepLast=100');
      const retrying = await waitForJob(
        impatientApi,
        jobId,
        (job) => job.attemptsMade >= 1,
        20_000,
      );
      expect(retrying.state).toBe('queued');
      expect(retrying.lastError?.code).toBe('LOCK_TIMEOUT');
    } finally {
      await gate.release();
      await impatient.stop();
      await impatientApi.close();
    }
  });
});

describe('advisory locks', () => {
  it('a second exclusive holder cannot exist, and a waiter gets the lock when it is released', async () => {
    const first = await locks().acquire('probe', 'exclusive', { timeoutMs: 1_000 });
    expect(await locks().tryAcquire('probe', 'exclusive')).toBeUndefined();
    expect(await locks().tryAcquire('probe', 'shared')).toBeUndefined();
    const waiting = locks().acquire('probe', 'exclusive', { timeoutMs: 10_000 });
    await vi.waitFor(async () => expect(await waitingLockRequests()).toBeGreaterThan(0), {
      timeout: 5_000,
      interval: 20,
    });
    const releasedAt = await first.release();
    const second = await waiting;
    expect(second.acquiredAt.getTime()).toBeGreaterThanOrEqual(releasedAt.getTime());
    await second.release();
  });

  it('shared holders coexist; an exclusive request times out with LOCK_TIMEOUT meanwhile', async () => {
    const a = await locks().acquire('shared-probe', 'shared', { timeoutMs: 1_000 });
    const b = await locks().acquire('shared-probe', 'shared', { timeoutMs: 1_000 });
    await expect(
      locks().acquire('shared-probe', 'exclusive', { timeoutMs: 300 }),
    ).rejects.toMatchObject({
      code: 'LOCK_TIMEOUT',
      retryable: true,
    });
    await a.release();
    await b.release();
    const c = await locks().tryAcquire('shared-probe', 'exclusive');
    expect(c).toBeDefined();
    await c?.release();
  });

  it('a holder killed with SIGKILL leaves no lock behind', async () => {
    const holder = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        path.resolve('test/fixtures/hold-lock.ts'),
        maintenanceUrl,
        env.name,
        'crash-probe',
      ],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    await new Promise<void>((resolve, reject) => {
      holder.stdout.on('data', (chunk: Buffer) => chunk.toString().includes('locked') && resolve());
      holder.once('exit', (code) => reject(new Error(`holder exited ${code}`)));
    });
    expect(await locks().tryAcquire('crash-probe', 'exclusive')).toBeUndefined();
    const exited = new Promise((resolve) => holder.once('exit', resolve));
    holder.kill('SIGKILL');
    await exited;
    let taken: HeldLock | undefined;
    await vi.waitFor(
      async () => {
        taken = await locks().tryAcquire('crash-probe', 'exclusive');
        expect(taken).toBeDefined();
      },
      { timeout: 10_000, interval: 50 },
    );
    await taken?.release();
  });
});
