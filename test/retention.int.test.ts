import { readdir } from 'node:fs/promises';
import { createLogger, type JobResult } from '@pgkeep/core';
import {
  AdvisoryLocks,
  type HeldLock,
  lockResources,
  parseDatabaseUrl,
  preRestoreComment,
} from '@pgkeep/pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  adminHeaders,
  getJob,
  json,
  type PolledJob,
  postJob,
  startApi,
  type TestApi,
  waitForJob,
} from './support/api.js';
import { seedPanelSchema } from './support/panel-schema.js';
import {
  createTestEnv,
  dropDatabase,
  type TestEnv,
  urlWithDatabase,
  withClient,
} from './support/test-env.js';
import { startWorker, type WorkerProcess } from './support/worker-process.js';

/**
 * Retention as an admin meets it through POST /api/backup/clean: keep-last and GFS, dry runs,
 * the newest backup never deleted, a backup that a verify or restore is reading left alone
 * (and said so), destructive jobs never overlapping, and replaced databases dropped by age.
 * Two workers, so that a clean-up can really be waiting while a restore runs elsewhere.
 */

type CleanResult = JobResult<'cleanup'>;
type RestoreResult = JobResult<'restore'>;
type VerifyResult = JobResult<'verify'>;

interface Manifest {
  id: string;
  filename: string;
  createdAt: string;
  database: string;
}

let env: TestEnv;
let api: TestApi;
let maintenanceUrl: string;
const workers: WorkerProcess[] = [];
const held: HeldLock[] = [];
/** Databases made here (replaced ones, pre-restore look-alikes): dropped at the end. */
const extraDatabases: string[] = [];

beforeAll(async () => {
  env = await createTestEnv('retention', { PRE_RESTORE_MAX_AGE_DAYS: '7' });
  maintenanceUrl = urlWithDatabase(env.serverUrl, env.env.MAINTENANCE_DATABASE ?? 'postgres');
  await seedPanelSchema(env.databaseUrl, 500);
  api = await startApi(env.env);
  await vi.waitFor(() => expect(api.services.redis.status).toBe('ready'), {
    timeout: 10_000,
    interval: 20,
  });
  workers.push(...(await Promise.all([startWorker(env.env), startWorker(env.env)])));
});

afterAll(async () => {
  for (const lock of held) await lock.release().catch(() => {});
  await Promise.all(workers.map((worker) => worker.stop()));
  await api?.close();
  for (const name of extraDatabases) await dropDatabase(env.serverUrl, name);
  await env?.cleanup();
});

function locks(): AdvisoryLocks {
  return new AdvisoryLocks(
    parseDatabaseUrl(maintenanceUrl),
    env.env.LOCK_NAMESPACE ?? env.name,
    createLogger('silent', 'test'),
  );
}

/** Holds a lock from the test, standing for a job that holds it. */
async function hold(resource: string, mode: 'shared' | 'exclusive'): Promise<HeldLock> {
  const lock = await locks().acquire(resource, mode, { timeoutMs: 10_000 });
  held.push(lock);
  return lock;
}

/** Resolves once some job holds `resource` (an exclusive try fails); bounded. */
async function heldBySomeone(resource: string): Promise<void> {
  await vi.waitFor(
    async () => {
      const probe = await locks().tryAcquire(resource, 'exclusive');
      if (probe) {
        await probe.release();
        throw new Error(`nobody holds ${resource} yet`);
      }
    },
    { timeout: 20_000, interval: 50 },
  );
}

async function list(): Promise<string[]> {
  const response = await api.app.inject({
    method: 'GET',
    url: '/api/backup',
    headers: adminHeaders(),
  });
  expect(response.statusCode, response.body).toBe(200);
  return json<{ data: Manifest[] }>(response).data.map((manifest) => manifest.id);
}

async function files(): Promise<string[]> {
  return (await readdir(env.backupDir)).sort();
}

const filesOf = (ids: string[]) => (all: string[]) =>
  all.filter((file) => ids.some((id) => file.includes(id)));

async function backup(label: string): Promise<Manifest> {
  const job = await waitForJob(api, await postJob(api, '/api/backup', { label }));
  expect(job.state, JSON.stringify(job.error)).toBe('completed');
  return job.result as unknown as Manifest;
}

async function backups(count: number): Promise<Manifest[]> {
  const made: Manifest[] = [];
  for (let i = 0; i < count; i += 1) made.push(await backup(`b${i}`));
  return made;
}

async function clean(query: string): Promise<{ job: PolledJob; result: CleanResult }> {
  const job = await waitForJob(api, await postJob(api, `/api/backup/clean?${query}`));
  expect(job.state, JSON.stringify(job.error)).toBe('completed');
  return { job, result: job.result as unknown as CleanResult };
}

const ids = (manifests: Manifest[]) => manifests.map((manifest) => manifest.id);
const sorted = (values: readonly string[]) => [...values].sort();

describe('keep-last and dry runs', () => {
  it('a dry run deletes nothing and says what it would delete; the real run deletes exactly that', async () => {
    const made = await backups(5);
    const newestFirst = ids(made).reverse();
    expect(await list()).toEqual(newestFirst);
    const filesBefore = await files();
    const oldest3 = ids(made.slice(0, 3));

    const dry = await clean('keepLast=2&dryRun=true');
    expect(dry.result).toMatchObject({
      dryRun: true,
      deletedCount: 3,
      keptLast: 2,
      kept: newestFirst.slice(0, 2),
      skipped: [],
    });
    expect(sorted(dry.result.deleted)).toEqual(sorted(oldest3));
    expect(await files()).toEqual(filesBefore);
    expect(await list()).toEqual(newestFirst);

    const real = await clean('keepLast=2');
    expect(real.result).toMatchObject({ dryRun: false, deletedCount: 3, keptLast: 2, skipped: [] });
    expect(sorted(real.result.deleted)).toEqual(sorted(dry.result.deleted));
    expect(await list()).toEqual(newestFirst.slice(0, 2));
    const filesAfter = await files();
    expect(filesOf(oldest3)(filesAfter)).toEqual([]);
    expect(filesAfter).toEqual(filesOf(newestFirst.slice(0, 2))(filesBefore));
  });

  it('keepLast=1 keeps the newest backup, and a second run finds nothing more to delete', async () => {
    const before = await list();
    const [newest] = await backups(1).then((made) => ids(made));
    const { result } = await clean('keepLast=1');
    expect(result).toMatchObject({ deletedCount: before.length, kept: [newest], keptLast: 1 });
    expect(sorted(result.deleted)).toEqual(sorted(before));
    expect(await list()).toEqual([newest]);
    expect((await files()).filter((file) => file.includes(newest ?? '-'))).toHaveLength(2);

    const again = await clean('keepLast=1');
    expect(again.result).toMatchObject({ deletedCount: 0, deleted: [], kept: [newest] });
  });
});

describe('GFS through the API', () => {
  it('policy=gfs&days=1 keeps exactly the newest of backups made today', async () => {
    const before = await list();
    const made = await backups(3);
    const newest = made[2]?.id;
    const { result } = await clean('policy=gfs&days=1&weeks=0&months=0&years=0');
    expect(result).toMatchObject({ dryRun: false, keptLast: null, kept: [newest], skipped: [] });
    expect(sorted(result.deleted)).toEqual(sorted([...before, ...ids(made.slice(0, 2))]));
    expect(result.deletedCount).toBe(result.deleted.length);
    expect(await list()).toEqual([newest]);
  });

  it('refuses a policy that does not add up, with 400, and queues nothing', async () => {
    const countsBefore = await api.services.queues.maintenance.getJobCounts();
    const refused: [string, string][] = [
      ['policy=gfs&keepLast=3', 'keepLast'],
      ['policy=gfs&days=0&weeks=0&months=0&years=0', 'GFS'],
      ['', 'keepLast'],
      ['dryRun=true', 'keepLast'],
      ['policy=keep-last', 'keepLast'],
      ['keepLast=3&days=2', 'days'],
      ['keepLast=0', 'keepLast'],
      ['keepLast=two', 'keepLast'],
      ['policy=fifo', 'policy'],
      ['policy=gfs&weeks=-1', 'weeks'],
      ['keepLast=3&dryRun=yes', 'dryRun'],
      ['keepLast=3&force=true', 'force'],
    ];
    for (const [query, mentions] of refused) {
      const response = await api.app.inject({
        method: 'POST',
        url: `/api/backup/clean?${query}`,
        headers: adminHeaders(),
      });
      expect(response.statusCode, `${query}: ${response.body}`).toBe(400);
      expect(json(response).error.code).toBe('VALIDATION_ERROR');
      expect(json(response).error.message, query).toContain(mentions);
    }
    const anonymous = await api.app.inject({ method: 'POST', url: '/api/backup/clean?keepLast=3' });
    expect(anonymous.statusCode).toBe(401);
    expect(await api.services.queues.maintenance.getJobCounts()).toEqual(countsBefore);
  });
});

describe('retention and jobs reading a backup', () => {
  it('skips a backup that a verify or restore holds, says why, and deletes it once released', async () => {
    await backups(2);
    // The list now: two new backups and the one kept before them.
    const current = await list();
    expect(current).toHaveLength(3);
    const [newestId, middleId, oldestId] = current as [string, string, string];

    const reading = await hold(lockResources.backup(oldestId), 'shared');
    const first = await clean('keepLast=1');
    expect(first.result).toMatchObject({ deleted: [middleId], deletedCount: 1, kept: [newestId] });
    expect(first.result.skipped).toEqual([{ id: oldestId, reason: expect.any(String) }]);
    expect(first.result.skipped[0]?.reason).toMatch(/restore|verify/);
    expect(await list()).toEqual([newestId, oldestId]);
    expect((await files()).filter((file) => file.includes(oldestId))).toHaveLength(2);

    await reading.release();
    const second = await clean('keepLast=1');
    expect(second.result).toMatchObject({ deleted: [oldestId], skipped: [] });
    expect(await list()).toEqual([newestId]);
    expect((await files()).filter((file) => file.includes(oldestId))).toEqual([]);
  });

  it('a clean-up during a real verify of an old backup skips it; the verify completes ok', async () => {
    const [old] = await list();
    const [newest] = ids(await backups(1));
    // Standing for a restore of the database: the verify takes the backup's lock, then waits
    // for the database's, so it is provably in the middle of its work when the clean-up runs.
    const database = await hold(lockResources.database(env.name), 'exclusive');
    const verifyId = await postJob(api, `/api/backup/${old}/verify`, { restore: true });
    await heldBySomeone(lockResources.backup(old ?? ''));
    const during = await clean('keepLast=1');
    expect(during.result).toMatchObject({ deleted: [], kept: [newest] });
    expect(during.result.skipped.map((skip) => skip.id)).toEqual([old]);
    expect((await getJob(api, verifyId)).state).toBe('running');

    await database.release();
    const verify = await waitForJob(api, verifyId);
    expect(verify.state, JSON.stringify(verify.error)).toBe('completed');
    const verified = verify.result as unknown as VerifyResult;
    expect(verified).toMatchObject({ backupId: old, ok: true });
    expect(verified.checks.map((check) => [check.name, check.ok])).toEqual([
      ['sha256', true],
      ['archive-read', true],
      ['scratch-restore', true],
      ['row-counts', true],
    ]);
    expect(await list()).toEqual([newest, old]);

    const after = await clean('keepLast=1');
    expect(after.result).toMatchObject({ deleted: [old], skipped: [] });
  });

  it('a verify and a clean-up of the same backup racing: the verify never fails for a vanished file', async () => {
    const [old] = await list();
    const [newest] = ids(await backups(1));
    const verifyId = await postJob(api, `/api/backup/${old}/verify`, { restore: true });
    const cleaned = await clean('keepLast=1');
    const verify = await waitForJob(api, verifyId);
    const skipped = cleaned.result.skipped.map((skip) => skip.id);
    if (skipped.includes(old ?? '')) {
      // The clean-up ran while the verify read the backup: left alone.
      expect(cleaned.result.deleted).toEqual([]);
      expect(await list()).toEqual([newest, old]);
      expect(verify.state, JSON.stringify(verify.error)).toBe('completed');
    } else {
      expect(cleaned.result.deleted).toEqual([old]);
    }
    if (verify.state === 'completed') {
      expect(verify.result).toMatchObject({ backupId: old, ok: true });
    } else {
      // Only possible when the clean-up deleted the backup before the verify began reading:
      // then the verify says the backup is gone, never a checksum or read failure.
      expect(cleaned.result.deleted).toEqual([old]);
      expect(verify.error?.code).toBe('BACKUP_NOT_FOUND');
      expect(verify.attemptsMade).toBe(1);
    }
    const settle = await clean('keepLast=1');
    expect(settle.result.skipped).toEqual([]);
    expect(await list()).toEqual([newest]);
  });

  it('a running restore keeps a clean-up waiting until it has finished (destructive lock)', async () => {
    const [newest] = await list();
    // The restore takes the destructive and database locks, then waits for this backup's.
    const gate = await hold(lockResources.backup(newest ?? ''), 'exclusive');
    const restoreId = await postJob(api, `/api/backup/${newest}/restore`, { confirm: env.name });
    await heldBySomeone(lockResources.destructive);
    const cleanId = await postJob(api, '/api/backup/clean?keepLast=1');
    // The other worker took the clean-up and waits for the lock the restore holds.
    await waitForJob(
      api,
      cleanId,
      (job) => job.state === 'running' && job.progress?.phase === 'waiting-for-lock',
      20_000,
    );
    expect((await getJob(api, restoreId)).state).toBe('running');
    await gate.release();

    const restore = await waitForJob(api, restoreId);
    expect(restore.state, JSON.stringify(restore.error)).toBe('completed');
    const restored = restore.result as unknown as RestoreResult;
    if (restored.previousDatabase) extraDatabases.push(restored.previousDatabase);
    const cleanup = await waitForJob(api, cleanId);
    expect(cleanup.state, JSON.stringify(cleanup.error)).toBe('completed');
    const cleaned = cleanup.result as unknown as CleanResult;
    expect(Date.parse(cleaned.lock.acquiredAt)).toBeGreaterThanOrEqual(
      Date.parse(restored.lock.releasedAt),
    );
    expect(Date.parse(cleaned.lock.acquiredAt)).toBeGreaterThanOrEqual(
      Date.parse(restore.startedAt ?? ''),
    );
    expect(cleaned.lock.waitedMs).toBeGreaterThan(0);
    // The replaced database is recent: kept for rollback, not dropped by this clean-up.
    expect(cleaned.droppedDatabases).not.toContain(restored.previousDatabase);
    expect(await list()).toEqual([newest]);
  });
});

describe('replaced databases', () => {
  const stamp = (date: Date) =>
    date
      .toISOString()
      .replace(/[-:TZ.]/g, '')
      .slice(0, 14);

  async function databases(): Promise<string[]> {
    return withClient(env.serverUrl, async (client) => {
      const { rows } = await client.query<{ datname: string }>(
        'SELECT datname FROM pg_database WHERE left(datname, length($1)) = $1 ORDER BY 1',
        [`${env.name}_pre_restore_`],
      );
      return rows.map((row) => row.datname);
    });
  }

  /** As a restore's swap leaves one: closed, and marked with the deployment and time. */
  async function createReplaced(
    name: string,
    closed: boolean,
    replacedAt: Date,
    namespace = env.env.LOCK_NAMESPACE ?? env.name,
  ): Promise<void> {
    extraDatabases.push(name);
    await withClient(env.serverUrl, async (client) => {
      await client.query(`CREATE DATABASE "${name}"`);
      if (closed) await client.query(`ALTER DATABASE "${name}" ALLOW_CONNECTIONS false`);
      await client.query(
        `COMMENT ON DATABASE "${name}" IS '${preRestoreComment(namespace, replacedAt)}'`,
      );
    });
  }

  it('drops only those closed to connections and older than PRE_RESTORE_MAX_AGE_DAYS; a dry run drops none', async () => {
    const old = new Date('2020-01-01T00:00:00Z');
    const oldClosed = `${env.name}_pre_restore_20200101000000_abcd`;
    const recentClosed = `${env.name}_pre_restore_${stamp(new Date(Date.now() - 86_400_000))}_abcd`;
    const oldOpen = `${env.name}_pre_restore_20200101000000_beef`;
    // Same shape, old and closed, but replaced by another deployment: never this one's to drop.
    const otherDeployment = `${env.name}_pre_restore_20200101000000_cafe`;
    await createReplaced(oldClosed, true, old);
    await createReplaced(recentClosed, true, new Date(Date.now() - 86_400_000));
    await createReplaced(oldOpen, false, old);
    await createReplaced(otherDeployment, true, old, `${env.name}_someone_else`);
    const before = await databases();
    expect(before).toEqual(
      expect.arrayContaining([oldClosed, recentClosed, oldOpen, otherDeployment]),
    );
    const mine = (names: string[]) => names.filter((name) => name.startsWith(env.name));

    const dry = await clean('keepLast=100&dryRun=true');
    expect(mine(dry.result.droppedDatabases)).toEqual([oldClosed]);
    expect(await databases()).toEqual(before);

    const real = await clean('keepLast=100');
    expect(mine(real.result.droppedDatabases)).toEqual([oldClosed]);
    expect(await databases()).toEqual(before.filter((name) => name !== oldClosed));
  });
});
