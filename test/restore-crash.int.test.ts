import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as pause } from 'node:timers/promises';
import { createLogger } from '@pgkeep/core';
import { AdvisoryLocks, lockResources, parseDatabaseUrl } from '@pgkeep/pg';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  adminHeaders,
  getJob,
  type PolledJob,
  postJob,
  startApi,
  type TestApi,
  waitForJob,
} from './support/api.js';
import { childrenOf, isRunning } from './support/processes.js';
import {
  createTestEnv,
  dropDatabase,
  type TestEnv,
  urlWithDatabase,
  withClient,
} from './support/test-env.js';
import { startWorker, type WorkerProcess } from './support/worker-process.js';

let env: TestEnv;
let api: TestApi;
let maintenanceUrl: string;
/** The worker that currently serves this file's queues (the crash test replaces it). */
let worker: WorkerProcess;
const workers: WorkerProcess[] = [];
const extraDirs: string[] = [];
/** Temporary databases seen in a pg_restore command line of one of this file's workers. */
const seenTemporaries = new Set<string>();

interface Backup {
  id: string;
  createdAt: string;
  rowCounts: Record<string, number>;
}
let backup: Backup;

interface RestoreResult {
  previousDatabase: string | null;
  rowCounts: Record<string, number>;
  downtimeMs: number;
  durationMs: number;
  lock: { acquiredAt: string; releasedAt: string };
}

const bounded = { timeout: 30_000, interval: 50 };

interface RunningPgRestore {
  pid: number;
  /** pg_restore -j forks its own workers; they are the leader's children, not the worker's. */
  helpers: number[];
  temporary: string;
}

/** The worker's pg_restore loading a temporary database (not the short `pg_restore --list`). */
function pgRestoreOf(owner: WorkerProcess): RunningPgRestore | undefined {
  for (const child of childrenOf(owner.pid)) {
    if (child.command !== 'pg_restore') continue;
    const temporary = /--dbname=(pgkeep_restore_\w+)/.exec(child.args)?.[1];
    if (!temporary) continue;
    seenTemporaries.add(temporary);
    return {
      pid: child.pid,
      helpers: childrenOf(child.pid).map((helper) => helper.pid),
      temporary,
    };
  }
  return undefined;
}

/**
 * Polls the job until pg_restore is loading the temporary database; with `parallel`, until it
 * has forked its -j helpers too (the data and index phase, the bulk of the work).
 */
async function waitForPgRestore(
  jobId: string,
  owner: WorkerProcess,
  options: { parallel?: boolean } = {},
): Promise<RunningPgRestore> {
  let running: RunningPgRestore | undefined;
  await waitForJob(
    api,
    jobId,
    (job) => {
      if (job.state !== 'running' || job.progress?.phase !== 'restoring') return false;
      running = pgRestoreOf(owner);
      return running !== undefined && (!options.parallel || running.helpers.length > 0);
    },
    60_000,
  );
  if (!running) throw new Error('pg_restore not found');
  return running;
}

async function expectGone(pids: number[]): Promise<void> {
  await vi.waitFor(async () => {
    for (const pid of pids) expect(await isRunning(pid), `process ${pid} still runs`).toBe(false);
  }, bounded);
}

async function databasesWhere(condition: string, value: string): Promise<string[]> {
  return withClient(maintenanceUrl, async (client) => {
    const { rows } = await client.query<{ datname: string }>(
      `SELECT datname FROM pg_database WHERE ${condition} ORDER BY 1`,
      [value],
    );
    return rows.map((row) => row.datname);
  });
}

const databaseExists = async (name: string) =>
  (await databasesWhere('datname = $1', name)).length > 0;
/**
 * This file's temporary restore databases that still exist. Other files restore on the same
 * server at the same time, so only the names seen in our own pg_restore command lines count.
 */
const temporaryDatabases = async () =>
  (await databasesWhere('starts_with(datname, $1)', 'pgkeep_restore_')).filter((name) =>
    seenTemporaries.has(name),
  );
const previousDatabases = () =>
  databasesWhere('starts_with(datname, $1)', `${env.name}_pre_restore_`);

async function allowsConnections(name: string): Promise<boolean | undefined> {
  return withClient(maintenanceUrl, async (client) => {
    const { rows } = await client.query<{ allowed: boolean }>(
      'SELECT datallowconn AS allowed FROM pg_database WHERE datname = $1',
      [name],
    );
    return rows[0]?.allowed;
  });
}

/** Exact row counts of the backup's tables in the target, keyed like the manifest. */
async function targetRowCounts(): Promise<Record<string, number>> {
  return withClient(env.databaseUrl, async (client) => {
    const counts: Record<string, number> = {};
    for (const key of Object.keys(backup.rowCounts)) {
      const dot = key.indexOf('.');
      const relation = `${client.escapeIdentifier(key.slice(0, dot))}.${client.escapeIdentifier(key.slice(dot + 1))}`;
      const { rows } = await client.query<{ n: string }>(
        `SELECT count(*)::text AS n FROM ${relation}`,
      );
      counts[key] = Number(rows[0]?.n ?? -1);
    }
    return counts;
  });
}

/** The target as the backup left it: online, open to connections, the backup's rows. */
async function expectTargetIsTheBackup(): Promise<void> {
  expect(await targetRowCounts()).toEqual(backup.rowCounts);
  expect(await allowsConnections(env.name)).toBe(true);
}

function postRestore(): Promise<string> {
  return postJob(api, `/api/backup/${backup.id}/restore`, { confirm: env.name });
}

function cancel(jobId: string) {
  return api.app.inject({
    method: 'POST',
    url: `/api/jobs/${jobId}/cancel`,
    headers: adminHeaders(),
  });
}

function locks(): AdvisoryLocks {
  return new AdvisoryLocks(
    parseDatabaseUrl(maintenanceUrl),
    env.env.LOCK_NAMESPACE ?? env.name,
    createLogger('silent', 'test'),
  );
}

async function startWorkerProcess(extra: Record<string, string> = {}): Promise<WorkerProcess> {
  const started = await startWorker({ ...env.env, ...extra });
  workers.push(started);
  return started;
}

beforeAll(async () => {
  env = await createTestEnv('rcrash');
  maintenanceUrl = urlWithDatabase(env.serverUrl, env.env.MAINTENANCE_DATABASE ?? 'postgres');
  // ~200 MB of rows plus two indexes: a restore takes seconds, long enough to interrupt.
  await withClient(env.databaseUrl, async (client) => {
    await client.query(`CREATE TABLE "User" (id int PRIMARY KEY, email text NOT NULL UNIQUE);
      INSERT INTO "User" SELECT g, 'user' || g || '@example.com' FROM generate_series(1, 50) g`);
    await client.query(`CREATE TABLE "WhatsappMessage" AS
      SELECT g AS id, md5(g::text) || repeat(md5((g * 7)::text), 4) AS body
      FROM generate_series(1, 1000000) g`);
    await client.query('ALTER TABLE "WhatsappMessage" ADD PRIMARY KEY (id)');
    await client.query('CREATE INDEX ON "WhatsappMessage" (body)');
  });
  api = await startApi(env.env);
  worker = await startWorkerProcess();
  const job = await waitForJob(api, await postJob(api, '/api/backup', {}), undefined, 90_000);
  expect(job.state, JSON.stringify(job.error)).toBe('completed');
  backup = job.result as unknown as Backup;
  expect(backup.rowCounts).toEqual({ 'public.User': 50, 'public.WhatsappMessage': 1_000_000 });
});

afterAll(async () => {
  await Promise.all(workers.map((started) => started.kill()));
  try {
    await Promise.all(
      Object.values(api?.services.queues ?? {}).map((queue) => queue.obliterate({ force: true })),
    );
    await api?.close();
  } finally {
    if (env) {
      const extra = [...(await previousDatabases()), ...seenTemporaries];
      for (const name of extra) await dropDatabase(env.serverUrl, name);
      await env.cleanup();
    }
    for (const dir of extraDirs) await rm(dir, { recursive: true, force: true });
  }
});

describe('a worker killed with SIGKILL in the middle of a restore', () => {
  it('leaves the target untouched and online; the next worker drops the temporary database and the job ends consistent', async () => {
    const jobId = await postRestore();
    const running = await waitForPgRestore(jobId, worker, { parallel: true });

    await worker.kill();
    // pg_restore dies with its worker (pdeathsig). The helpers it forked for -j do not inherit
    // pdeathsig; they stop once their current item is done and they find the leader gone.
    await expectGone([running.pid]);
    await expectGone(running.helpers);
    await expectTargetIsTheBackup();
    // The crash left the temporary database behind: nobody was there to drop it.
    expect(await databaseExists(running.temporary)).toBe(true);

    worker = await startWorkerProcess();
    // Dropped at start-up, before the worker takes jobs. (A retry of the stalled job may
    // already be loading a temporary database of another name.)
    expect(await databaseExists(running.temporary)).toBe(false);

    const current = worker;
    const job = await waitForJob(
      api,
      jobId,
      (polled) => {
        pgRestoreOf(current); // remember the retry's temporary database, if there is one
        return polled.state === 'completed' || polled.state === 'failed';
      },
      120_000,
    );
    if (job.state === 'completed') {
      const result = job.result as unknown as RestoreResult;
      expect(result.rowCounts).toEqual(backup.rowCounts);
      expect(result.previousDatabase).toMatch(new RegExp(`^${env.name}_pre_restore_`));
    } else {
      expect(job.state).toBe('failed');
      expect(job.error?.code).toMatch(/^[A-Z_]+$/);
      // Back within RESTORE_RETRY_WINDOW_MS (5 minutes): the job is run again, not refused.
      expect(job.error?.code).not.toBe('RESTORE_INTERRUPTED');
      expect(job.error?.message.length ?? 0).toBeGreaterThan(10);
    }
    await expectTargetIsTheBackup();
    expect(await temporaryDatabases()).toEqual([]);
  });
});

describe('a restore whose worker comes back after RESTORE_RETRY_WINDOW_MS', () => {
  it('is not run again: the job fails as RESTORE_INTERRUPTED, the target untouched, no temporary database left', async () => {
    const windowMs = 1_500;
    const previousBefore = await previousDatabases();
    const jobId = await postRestore();
    const running = await waitForPgRestore(jobId, worker);
    const { createdAt } = await getJob(api, jobId);

    await worker.kill();
    await expectGone([running.pid]);
    await expectGone(running.helpers);
    // The worker stays down until the request (made just before the job was queued) is older
    // than the window.
    await vi.waitFor(
      () => expect(Date.now() - Date.parse(createdAt)).toBeGreaterThan(windowMs),
      bounded,
    );

    const late = await startWorkerProcess({ RESTORE_RETRY_WINDOW_MS: String(windowMs) });
    worker = late;
    const job = await waitForJob(
      api,
      jobId,
      (polled) => {
        pgRestoreOf(late);
        return polled.state === 'completed' || polled.state === 'failed';
      },
      60_000,
    );
    expect(job.state, JSON.stringify(job.result)).toBe('failed');
    expect(job.error?.code, JSON.stringify(job.error)).toBe('RESTORE_INTERRUPTED');
    expect(job.error?.message).toContain(`${env.name} is untouched`);
    expect(job.error?.message).toContain('Ask for the restore again');
    expect(job.attemptsMade).toBe(1);
    // The run that came back stopped before it began: it never loaded anything.
    expect(
      late.lines.filter((line) => line.jobId === jobId && line.msg === 'restore started'),
    ).toEqual([]);
    await expectTargetIsTheBackup();
    expect(await previousDatabases()).toEqual(previousBefore);
    expect(await databaseExists(running.temporary)).toBe(false);
    expect(await temporaryDatabases()).toEqual([]);

    // The worker with the tiny window goes; the next tests get one with the default.
    await late.stop();
    worker = await startWorkerProcess();
  });
});

describe('the target during a full restore', () => {
  it('answers queries while the temporary database loads; only the swap interrupts it', async () => {
    const successes: number[] = [];
    const failures: { at: number; message: string }[] = [];
    let stopped = false;
    const deadline = Date.now() + 110_000;
    // A client of the restored database: a fresh connection every 50 ms (loop pacing).
    const probing = (async () => {
      while (!stopped && Date.now() < deadline) {
        const client = new pg.Client({
          connectionString: env.databaseUrl,
          connectionTimeoutMillis: 5_000,
        });
        client.on('error', () => {});
        try {
          await client.connect();
          await client.query('SELECT count(*) FROM "User"');
          successes.push(Date.now());
        } catch (error) {
          failures.push({ at: Date.now(), message: (error as Error).message });
        } finally {
          await client.end().catch(() => {});
        }
        await pause(50);
      }
    })();
    try {
      await vi.waitFor(() => expect(successes.length).toBeGreaterThan(0), bounded);
      const jobId = await postRestore();
      let restoringFrom = Number.POSITIVE_INFINITY;
      let restoringUntil = Number.NEGATIVE_INFINITY;
      const job = await waitForJob(
        api,
        jobId,
        (polled) => {
          if (polled.progress?.phase === 'restoring') {
            restoringFrom = Math.min(restoringFrom, Date.now());
            restoringUntil = Date.now();
          }
          return polled.state === 'completed' || polled.state === 'failed';
        },
        110_000,
      );
      expect(job.state, JSON.stringify(job.error)).toBe('completed');
      const result = job.result as unknown as RestoreResult;
      // One more answer from the restored database closes the gap the swap opened.
      const finishedAt = Date.parse(job.finishedAt ?? '');
      await vi.waitFor(() => expect(successes.at(-1)).toBeGreaterThan(finishedAt), bounded);
      stopped = true;
      await probing;

      let longestGap = 0;
      for (let i = 1; i < successes.length; i += 1) {
        longestGap = Math.max(longestGap, (successes[i] ?? 0) - (successes[i - 1] ?? 0));
      }
      console.log(
        `restore downtime: longest gap ${longestGap} ms, ${failures.length} failed probes, restore took ${result.durationMs} ms (swap downtimeMs ${result.downtimeMs}, ${successes.length} successful probes)`,
      );
      const whileLoading = (at: number) => at >= restoringFrom && at <= restoringUntil;
      expect(successes.filter(whileLoading).length).toBeGreaterThan(0);
      expect(failures.filter((failure) => whileLoading(failure.at))).toEqual([]);
      expect(result.downtimeMs).toEqual(expect.any(Number));
      expect(longestGap).toBeLessThan(result.durationMs * 0.25);
      await expectTargetIsTheBackup();
    } finally {
      stopped = true;
      await probing;
    }
  });
});

describe('cancelling a restore', () => {
  it('stops a running restore: the job fails as JOB_CANCELLED, the target is untouched, nothing is left', async () => {
    const previousBefore = await previousDatabases();
    const jobId = await postRestore();
    const running = await waitForPgRestore(jobId, worker, { parallel: true });

    const response = await cancel(jobId);
    expect(response.statusCode, response.body).toBe(202);
    const accepted = response.json() as { data: { cancelRequestedBy: string | null } };
    expect(accepted.data.cancelRequestedBy).toBe('admin@example.com');

    const job = await waitForJob(api, jobId, undefined, 60_000);
    expect(job.state).toBe('failed');
    expect(job.error?.code, JSON.stringify(job.error)).toBe('JOB_CANCELLED');
    expect(job.attemptsMade).toBe(1);

    await expectGone([running.pid, ...running.helpers]);
    expect(childrenOf(worker.pid).filter((child) => child.command === 'pg_restore')).toEqual([]);
    await vi.waitFor(async () => expect(await temporaryDatabases()).toEqual([]), bounded);
    await expectTargetIsTheBackup();
    expect(await previousDatabases()).toEqual(previousBefore);

    const again = await cancel(jobId);
    expect(again.statusCode).toBe(409);
    expect((again.json() as { error: { code: string } }).error.code).toBe('JOB_NOT_CANCELLABLE');
  });

  it('stops a restore waiting for the destructive lock, and one still in the queue, before they touch anything', async () => {
    const previousBefore = await previousDatabases();
    const gate = await locks().acquire(lockResources.destructive, 'exclusive', {
      timeoutMs: 5_000,
    });
    let waitingId: string;
    let queuedId: string;
    try {
      waitingId = await postRestore();
      await waitForJob(
        api,
        waitingId,
        (job) => job.state === 'running' && job.progress?.phase === 'waiting-for-lock',
        30_000,
      );
      // One destructive job at a time per worker: the second restore stays in the queue.
      queuedId = await postRestore();
      expect((await getJob(api, queuedId)).state).toBe('queued');
      for (const jobId of [waitingId, queuedId]) {
        const response = await cancel(jobId);
        expect(response.statusCode, response.body).toBe(202);
      }
    } finally {
      await gate.release();
    }
    for (const jobId of [waitingId, queuedId]) {
      const job = await waitForJob(api, jobId, undefined, 60_000);
      expect(job.state).toBe('failed');
      expect(job.error?.code, JSON.stringify(job.error)).toBe('JOB_CANCELLED');
      expect(job.attemptsMade).toBe(1);
    }
    await expectTargetIsTheBackup();
    expect(await previousDatabases()).toEqual(previousBefore);
  });
});

describe('a backup of the database being restored', () => {
  it('waits for the restore to finish, then backs up the restored data', async () => {
    // The target drifts from the backup, so a backup that raced the restore would show it.
    await withClient(env.databaseUrl, (client) =>
      client.query(`INSERT INTO "User" SELECT g, 'late' || g || '@example.com'
        FROM generate_series(1001, 1007) g`),
    );
    const restoreId = await postRestore();
    await waitForPgRestore(restoreId, worker);
    const backupId = await postJob(api, '/api/backup', {});

    const backupWhileRestoring: { at: number; job: PolledJob }[] = [];
    await vi.waitFor(
      async () => {
        // The backup is read first: when the restore reads as running afterwards, it ran then.
        const at = Date.now();
        const backupJob = await getJob(api, backupId);
        const restoreJob = await getJob(api, restoreId);
        if (restoreJob.state === 'queued' || restoreJob.state === 'running') {
          backupWhileRestoring.push({ at, job: backupJob });
          throw new Error(
            `restore is ${restoreJob.state} (${JSON.stringify(restoreJob.progress)})`,
          );
        }
      },
      { timeout: 90_000, interval: 50 },
    );
    const restore = await getJob(api, restoreId);
    expect(restore.state, JSON.stringify(restore.error)).toBe('completed');
    const releasedAt = Date.parse((restore.result as unknown as RestoreResult).lock.releasedAt);

    // The restore lets its locks go a moment before its job reads as completed: only what was
    // seen while it still held them counts.
    const whileLocked = backupWhileRestoring
      .filter((sample) => sample.at < releasedAt)
      .map((sample) => sample.job);
    expect(whileLocked.length).toBeGreaterThan(0);
    for (const seen of whileLocked) {
      expect(seen.state).not.toBe('completed');
      expect(seen.state).not.toBe('failed');
      expect([undefined, 'waiting-for-lock']).toContain(seen.progress?.phase);
    }

    const done = await waitForJob(api, backupId, undefined, 90_000);
    expect(done.state, JSON.stringify(done.error)).toBe('completed');
    const manifest = done.result as unknown as Backup;
    expect(manifest.rowCounts).toEqual(backup.rowCounts);
    const started = worker.lines.find(
      (line) => line.msg === 'backup started' && line.jobId === backupId,
    );
    expect(started, 'the worker logs "backup started" when it starts dumping').toBeDefined();
    expect(Number(started?.time)).toBeGreaterThanOrEqual(releasedAt);
    // The manifest dates the backup by its data, which is the restored data: a backup listed
    // as older than the restore would be picked by anyone rolling back to before it.
    expect(
      Date.parse(manifest.createdAt),
      `createdAt ${manifest.createdAt} is before the restore released its lock at ${new Date(releasedAt).toISOString()}`,
    ).toBeGreaterThanOrEqual(releasedAt);
  });
});

describe('a worker of another deployment on the same server', () => {
  it('starting up leaves a running restore of this deployment alone', async () => {
    const otherDir = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-rcrash-other-'));
    extraDirs.push(otherDir);
    const jobId = await postRestore();
    const running = await waitForPgRestore(jobId, worker);

    // Its own queues, lock namespace and backup directory, as LOCK_NAMESPACE documents.
    await startWorkerProcess({
      QUEUE_PREFIX: `${env.name}_other`,
      LOCK_NAMESPACE: `${env.name}_other`,
      BACKUP_DIR: otherDir,
    });
    expect(
      await databaseExists(running.temporary),
      'a worker of another LOCK_NAMESPACE must not drop a running restore’s temporary database',
    ).toBe(true);

    const job = await waitForJob(api, jobId, undefined, 90_000);
    expect(job.state, JSON.stringify(job.error)).toBe('completed');
    await expectTargetIsTheBackup();
  });
});
