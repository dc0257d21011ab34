import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { publishHeartbeat } from '@pgkeep/queue';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { adminHeaders, postJob, startApi, type TestApi, token, waitForJob } from './support/api.js';
import { seedPanelSchema } from './support/panel-schema.js';
import { createTestEnv, type TestEnv, urlWithDatabase } from './support/test-env.js';
import { startWorker, type WorkerProcess } from './support/worker-process.js';

/**
 * GET /api/backup/health/detail as an admin (or a monitoring job with an admin's token) reads
 * it: ok, warning or error, with a coded reason for every finding — no backup, an old one, a
 * failed scheduled run, a filling disk, an old pg_dump, a dependency down, no worker.
 */

interface Reason {
  code: string;
  severity: 'warning' | 'error';
  message: string;
}

interface Detail {
  status: 'ok' | 'warning' | 'error';
  reasons: Reason[];
  checks: Record<string, { ok: boolean }>;
  backupCount: number | null;
  newestBackup: {
    id: string;
    completedAt: string;
    ageSeconds: number;
    lastVerify: {
      ok: boolean;
      verifiedAt: string;
      jobId: string | null;
      failedChecks: { name: string; detail: string }[];
    } | null;
  } | null;
  maxBackupAgeSeconds: number;
  lastScheduledBackupFailure: {
    jobId: string;
    dueAt: string;
    failedAt: string | null;
    error: { code: string; message: string };
  } | null;
  freeBytes: number | null;
  minFreeBytes: number;
}

async function detail(api: TestApi, headers: Record<string, string> = adminHeaders()) {
  const started = Date.now();
  const response = await api.app.inject({
    method: 'GET',
    url: '/api/backup/health/detail',
    headers,
  });
  return {
    status: response.statusCode,
    raw: response.body,
    data: (response.json() as { data: Detail }).data,
    elapsedMs: Date.now() - started,
  };
}

const codes = (data: Detail) => data.reasons.map((reason) => reason.code).sort();

/** The API once its Redis connection is open, so only the failure under test shows. */
async function connectedApi(variables: Record<string, string>): Promise<TestApi> {
  const api = await startApi(variables);
  apis.push(api);
  await vi.waitFor(() => expect(api.services.redis.status).toBe('ready'), {
    timeout: 5_000,
    interval: 20,
  });
  return api;
}

let env: TestEnv;
let api: TestApi;
let worker: WorkerProcess;
const envs: TestEnv[] = [];
const apis: TestApi[] = [];
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  // A small free-space threshold: the answer must not depend on this machine's disk.
  env = await createTestEnv('hdetail', { HEALTH_MIN_FREE_BYTES: '1024' });
  envs.push(env);
  await seedPanelSchema(env.databaseUrl, 50);
  [api, worker] = await Promise.all([connectedApi(env.env), startWorker(env.env)]);
  workers.push(worker);
});

afterAll(async () => {
  await Promise.all(workers.map((running) => running.stop()));
  await Promise.all(apis.map((started) => started.close()));
  for (const made of envs) await made.cleanup();
});

describe('health detail', () => {
  it('is for admins: 401 without a token, 403 for a valid non-admin token', async () => {
    const none = await api.app.inject({ method: 'GET', url: '/api/backup/health/detail' });
    expect(none.statusCode).toBe(401);
    expect(none.json()).toMatchObject({ success: false, error: { code: 'UNAUTHORIZED' } });
    const viewer = await api.app.inject({
      method: 'GET',
      url: '/api/backup/health/detail',
      headers: { authorization: `Bearer ${token({ sub: 'viewer@example.com', role: 'USER' })}` },
    });
    expect(viewer.statusCode).toBe(403);
    expect(viewer.json()).toMatchObject({ success: false, error: { code: 'FORBIDDEN' } });
  });

  it('is an error with NO_BACKUP before the first backup, and nothing else is wrong', async () => {
    const { status, data, raw } = await detail(api);
    expect(status, raw).toBe(200);
    expect(data.status).toBe('error');
    expect(data.reasons).toEqual([
      { code: 'NO_BACKUP', severity: 'error', message: expect.any(String) },
    ]);
    expect(data.backupCount).toBe(0);
    expect(data.newestBackup).toBeNull();
    expect(data.checks.workers?.ok).toBe(true);
  });

  it('is ok with a fresh backup, and says how old it is and how much space is left', async () => {
    const made = await waitForJob(api, await postJob(api, '/api/backup', {}));
    expect(made.state).toBe('completed');
    const manifest = made.result as { id: string; completedAt: string };
    const { status, data, raw } = await detail(api);
    expect(status, raw).toBe(200);
    expect(data).toMatchObject({
      status: 'ok',
      reasons: [],
      backupCount: 1,
      newestBackup: { id: manifest.id, completedAt: manifest.completedAt },
      maxBackupAgeSeconds: 24 * 3_600,
      lastScheduledBackupFailure: null,
      minFreeBytes: 1024,
    });
    expect(data.newestBackup?.ageSeconds).toBeLessThan(60);
    expect(data.freeBytes).toBeGreaterThan(1024);
  });

  it('warns BACKUP_TOO_OLD once the newest backup is older than HEALTH_MAX_BACKUP_AGE_HOURS', async () => {
    // 0.0002 h is 0.72 s: the backup made above crosses it within a second or two.
    const strict = await connectedApi({ ...env.env, HEALTH_MAX_BACKUP_AGE_HOURS: '0.0002' });
    const { data } = await vi.waitFor(
      async () => {
        const answer = await detail(strict);
        expect(answer.data.status, answer.raw).toBe('warning');
        return answer;
      },
      { timeout: 10_000, interval: 100 },
    );
    expect(data.reasons).toEqual([
      {
        code: 'BACKUP_TOO_OLD',
        severity: 'warning',
        message: expect.stringContaining(data.newestBackup?.id ?? 'no backup'),
      },
    ]);
    expect(data.maxBackupAgeSeconds).toBeCloseTo(0.72, 5);
  });

  it('warns LOW_DISK_SPACE when the backup directory has less free space than HEALTH_MIN_FREE_BYTES', async () => {
    const huge = String(Number.MAX_SAFE_INTEGER);
    const strict = await connectedApi({ ...env.env, HEALTH_MIN_FREE_BYTES: huge });
    const { status, data, raw } = await detail(strict);
    expect(status, raw).toBe(200);
    expect(data.status).toBe('warning');
    expect(data.reasons).toEqual([
      { code: 'LOW_DISK_SPACE', severity: 'warning', message: expect.stringContaining('GiB') },
    ]);
    expect(data.freeBytes).toBeGreaterThan(0);
    expect(data.minFreeBytes).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('is an error while the last scheduled backup failed, until a later scheduled one succeeds', async () => {
    const scheduled = await createTestEnv('hdsched', { HEALTH_MIN_FREE_BYTES: '1024' });
    envs.push(scheduled);
    const schedule = {
      AUTO_BACKUP_ENABLED: 'true',
      BACKUP_SCHEDULE: '*/2 * * * * *',
      BACKUP_ATTEMPTS: '1',
    };
    const watcher = await connectedApi(scheduled.env);
    // The worker backs up a database that does not exist: every scheduled run fails.
    const failing = await startWorker({
      ...scheduled.env,
      ...schedule,
      DATABASE_URL: urlWithDatabase(scheduled.serverUrl, `${scheduled.name}_missing`),
    });
    workers.push(failing);
    const broken = await vi.waitFor(
      async () => {
        const answer = await detail(watcher);
        expect(codes(answer.data), answer.raw).toContain('SCHEDULED_BACKUP_FAILED');
        return answer.data;
      },
      { timeout: 30_000, interval: 200 },
    );
    expect(broken.status).toBe('error');
    expect(codes(broken)).toEqual(['NO_BACKUP', 'SCHEDULED_BACKUP_FAILED']);
    const failure = broken.lastScheduledBackupFailure;
    expect(failure?.jobId).toMatch(/^repeat:schedule-backup:\d+$/);
    expect(['DATABASE_UNAVAILABLE', 'PG_DUMP_FAILED']).toContain(failure?.error.code);
    const reason = broken.reasons.find((found) => found.code === 'SCHEDULED_BACKUP_FAILED');
    expect(reason?.message).toContain(failure?.jobId);
    expect(reason?.message).toContain(`${scheduled.name}_missing`);

    // Fixed: a worker for the right database takes the schedule over; its first scheduled
    // backup is newer than every failed run, and the error goes away.
    await failing.stop();
    const fixed = await startWorker({ ...scheduled.env, ...schedule });
    workers.push(fixed);
    const healed = await vi.waitFor(
      async () => {
        const answer = await detail(watcher);
        expect(answer.data.status, answer.raw).toBe('ok');
        return answer.data;
      },
      { timeout: 30_000, interval: 200 },
    );
    expect(healed.reasons).toEqual([]);
    expect(healed.backupCount).toBeGreaterThanOrEqual(1);
    // The failure is still on record, but older than the newest scheduled backup.
    expect(healed.lastScheduledBackupFailure?.jobId).toMatch(/^repeat:schedule-backup:\d+$/);
    await fixed.stop();
  });
});

describe('health detail and verifies', () => {
  it('is an error while the newest backup failed its last verify, a warning once a newer backup replaces it', async () => {
    const own = await createTestEnv('hdverify', { HEALTH_MIN_FREE_BYTES: '1024' });
    envs.push(own);
    await seedPanelSchema(own.databaseUrl, 50);
    const [ownApi, ownWorker] = await Promise.all([connectedApi(own.env), startWorker(own.env)]);
    workers.push(ownWorker);
    const backup = async () => {
      const made = await waitForJob(ownApi, await postJob(ownApi, '/api/backup', {}));
      expect(made.state, JSON.stringify(made.error)).toBe('completed');
      return made.result as { id: string; filename: string };
    };
    const verify = async (id: string) =>
      waitForJob(ownApi, await postJob(ownApi, `/api/backup/${id}/verify`, {}));

    const first = await backup();
    const passed = await verify(first.id);
    expect(passed.state).toBe('completed');
    const good = (await detail(ownApi)).data;
    expect(good.status).toBe('ok');
    expect(good.newestBackup?.lastVerify).toMatchObject({
      ok: true,
      jobId: passed.jobId,
      failedChecks: [],
    });

    // The file changes behind pgkeep's back: its next verify finds it bad.
    const file = path.join(own.backupDir, first.filename);
    const bytes = await readFile(file);
    const at = Math.floor(bytes.length / 2);
    bytes[at] = (bytes[at] ?? 0) ^ 0xff;
    await writeFile(file, bytes);
    const failed = await verify(first.id);
    expect(failed.state).toBe('failed');
    expect(failed.error?.code).toBe('VERIFY_FAILED');
    const bad = await detail(ownApi);
    expect(bad.data.status, bad.raw).toBe('error');
    expect(bad.data.reasons).toEqual([
      { code: 'BACKUP_FAILED_VERIFY', severity: 'error', message: expect.any(String) },
    ]);
    const message = bad.data.reasons[0]?.message ?? '';
    for (const part of [first.id, failed.jobId, 'sha256: ']) expect(message).toContain(part);
    expect(bad.data.newestBackup?.lastVerify).toMatchObject({
      ok: false,
      jobId: failed.jobId,
      failedChecks: expect.arrayContaining([
        { name: 'sha256', detail: expect.stringContaining('does not match its manifest') },
      ]),
    });

    // A newer backup is what a restore reaches for now; the bad one is still listed.
    const second = await backup();
    const replaced = await detail(ownApi);
    expect(replaced.data.status, replaced.raw).toBe('warning');
    expect(replaced.data.reasons).toEqual([
      {
        code: 'BAD_BACKUP_LISTED',
        severity: 'warning',
        message: expect.stringContaining(first.id),
      },
    ]);
    expect(replaced.data.newestBackup).toMatchObject({ id: second.id, lastVerify: null });

    // Deleted, the bad backup no longer counts.
    const deleted = await waitForJob(
      ownApi,
      await postJob(ownApi, `DELETE /api/backup/${first.id}`),
    );
    expect(deleted.state, JSON.stringify(deleted.error)).toBe('completed');
    expect((await detail(ownApi)).data).toMatchObject({ status: 'ok', reasons: [] });
    await ownWorker.stop();
  });
});

describe('health detail and the dependencies', () => {
  it('is an error with NO_WORKER when no worker is alive, and PG_DUMP_TOO_OLD for an old pg_dump', async () => {
    const idle = await createTestEnv('hdidle', { HEALTH_MIN_FREE_BYTES: '1024' });
    envs.push(idle);
    const idleApi = await connectedApi(idle.env);
    const alone = await detail(idleApi);
    expect(alone.data.status).toBe('error');
    expect(codes(alone.data)).toEqual(['NO_BACKUP', 'NO_WORKER']);

    // A worker whose pg_dump 9.6 cannot dump this server.
    const redis = new Redis(idle.redisUrl);
    try {
      const tool = { version: '9.6', major: 9 };
      await publishHeartbeat(
        redis,
        // The deployment's Redis prefix: QUEUE_PREFIX as a hash tag.
        `{${idle.name}}`,
        {
          workerId: 'old-tools',
          hostname: 'elsewhere',
          pid: 1,
          startedAt: new Date().toISOString(),
          seenAt: new Date().toISOString(),
          pgDump: tool,
          pgRestore: tool,
        },
        60_000,
      );
    } finally {
      redis.disconnect();
    }
    const old = await detail(idleApi);
    expect(codes(old.data)).toEqual(['NO_BACKUP', 'PG_DUMP_TOO_OLD']);
    const reason = old.data.reasons.find((found) => found.code === 'PG_DUMP_TOO_OLD');
    expect(reason).toMatchObject({ severity: 'error', message: expect.stringContaining('9.6') });
  });

  it('is an error naming Redis or the database when one is unreachable, and answers quickly', async () => {
    const noRedis = await startApi({ ...env.env, REDIS_URL: 'redis://127.0.0.1:1' });
    apis.push(noRedis);
    const withoutRedis = await detail(noRedis);
    expect(withoutRedis.status, withoutRedis.raw).toBe(200);
    expect(withoutRedis.elapsedMs).toBeLessThan(10_000);
    expect(withoutRedis.data.status).toBe('error');
    // Nothing is known of workers or scheduled runs without Redis: Redis is the reason.
    expect(codes(withoutRedis.data)).toEqual(['REDIS_UNAVAILABLE']);

    const noDatabase = await connectedApi({
      ...env.env,
      DATABASE_URL: 'postgres://postgres@127.0.0.1:1/x',
    });
    const withoutDatabase = await detail(noDatabase);
    expect(withoutDatabase.elapsedMs).toBeLessThan(10_000);
    expect(withoutDatabase.data.status).toBe('error');
    expect(codes(withoutDatabase.data)).toEqual(['DATABASE_UNAVAILABLE']);
  });
});
