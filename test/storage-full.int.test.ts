import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { watch } from 'node:fs';
import { appendFile, mkdtemp, readdir, readFile, rm, statfs } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { scratchDatabasePrefix } from '@pgkeep/pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  adminHeaders,
  type PolledJob,
  postJob,
  startApi,
  type TestApi,
  waitForJob,
} from './support/api.js';
import { seedPanelSchema } from './support/panel-schema.js';
import { createTestEnv, type TestEnv, withClient } from './support/test-env.js';
import { startWorker, type WorkerProcess } from './support/worker-process.js';

/**
 * A backup directory that fills up, for real: BACKUP_DIR is an 8 MiB tmpfs. A backup that
 * runs out of space fails as STORAGE_FULL naming the destination, once (no retry against the
 * same full disk), and leaves no partial file and every older backup as it was; one that
 * surely cannot fit is refused before it writes anything; the health detail warns before that
 * point; a restore checks the space for its decompressed scratch copy the same way.
 * Mounting needs root: without it (or without tmpfs) the file is skipped, saying why.
 */

const TMPFS_BYTES = 8 * 1024 * 1024;

function mountTmpfs(dir: string): string | null {
  if (process.getuid?.() !== 0) return 'not root: mounting a tmpfs as BACKUP_DIR needs root';
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${TMPFS_BYTES},mode=0700`, 'tmpfs', dir], {
      stdio: 'pipe',
    });
    return null;
  } catch (error) {
    return `mount -t tmpfs failed: ${(error as { stderr?: Buffer }).stderr?.toString().trim() || (error as Error).message}`;
  }
}

const mountPoint = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-full-'));
const skipReason = mountTmpfs(mountPoint);
if (skipReason) console.warn(`storage-full tests skipped: ${skipReason}`);

let env: TestEnv;
let api: TestApi;
let worker: WorkerProcess;
const FILLER = path.join(mountPoint, 'filler.bin');

interface Manifest {
  id: string;
  filename: string;
  size: number;
  sha256: string;
}

async function freeBytes(): Promise<number> {
  const stats = await statfs(mountPoint);
  return stats.bavail * stats.bsize;
}

/** Grows the filler file until about `target` bytes are left free (within a page). */
async function leaveFree(target: number): Promise<void> {
  await rm(FILLER, { force: true });
  const free = await freeBytes();
  if (free > target) await appendFile(FILLER, Buffer.alloc(free - target));
}

const sha256Of = async (file: string) =>
  createHash('sha256')
    .update(await readFile(file))
    .digest('hex');

/** Files a job created in BACKUP_DIR while `work` ran (inotify keeps events in order). */
async function filesCreatedDuring<T>(
  work: () => Promise<T>,
): Promise<{ result: T; names: string[] }> {
  const seen = new Set<string>();
  const watcher = watch(mountPoint, (_event, name) => {
    if (name) seen.add(String(name));
  });
  try {
    const result = await work();
    const marker = path.join(mountPoint, `marker-${Date.now()}`);
    await appendFile(marker, 'm');
    await vi.waitFor(() => expect(seen.has(path.basename(marker))).toBe(true), {
      timeout: 5_000,
      interval: 10,
    });
    await rm(marker);
    return { result, names: [...seen].filter((name) => name.startsWith('backup-')) };
  } finally {
    watcher.close();
  }
}

/** A job that failed, or that failed once and waits for a retry: the first outcome either way. */
const failedOnce = (job: PolledJob) =>
  job.state === 'completed' || job.state === 'failed' || job.lastError !== null;

let first: Manifest;

describe.skipIf(skipReason !== null)('a full backup directory', () => {
  beforeAll(async () => {
    env = await createTestEnv('full', {
      BACKUP_DIR: mountPoint,
      // Retries would come back 30 s later: a retried STORAGE_FULL shows as lastError here.
      BACKUP_ATTEMPTS: '3',
      HEALTH_MIN_FREE_BYTES: '0',
    });
    await seedPanelSchema(env.databaseUrl);
    [api, worker] = await Promise.all([startApi(env.env), startWorker(env.env)]);
    const made = await waitForJob(api, await postJob(api, '/api/backup', {}));
    expect(made.state, JSON.stringify(made.error)).toBe('completed');
    first = made.result as unknown as Manifest;
    // About 12 MiB of random bytes: no compression brings the next dump under 8 MiB.
    await withClient(env.databaseUrl, (client) =>
      client.query(`
        CREATE TABLE "Attachment" (id int PRIMARY KEY, content bytea NOT NULL);
        INSERT INTO "Attachment"
        SELECT g, (SELECT string_agg(decode(md5(random()::text || g || i), 'hex'), ''::bytea)
                   FROM generate_series(1, 65536) i)
        FROM generate_series(1, 12) g;
      `),
    );
  });

  afterAll(async () => {
    await worker?.stop();
    await api?.close();
    await env?.cleanup();
    await rm(FILLER, { force: true });
  });

  async function expectOnlyTheFirstBackup() {
    const names = (await readdir(mountPoint)).filter((name) => name.startsWith('backup-'));
    expect(names.sort()).toEqual([first.filename, `backup-${first.id}.manifest.json`].sort());
    expect(await sha256Of(path.join(mountPoint, first.filename))).toBe(first.sha256);
    const list = await api.app.inject({
      method: 'GET',
      url: '/api/backup',
      headers: adminHeaders(),
    });
    expect((list.json() as { data: Manifest[] }).data.map((backup) => backup.id)).toEqual([
      first.id,
    ]);
  }

  it.each([
    { compression: 'zstd', writer: 'zstd writing the file itself' },
    { compression: 'gzip', writer: 'this process writing the file' },
  ])(
    'a $compression backup that fills the disk ($writer) fails as STORAGE_FULL, once, leaving nothing',
    async ({ compression }) => {
      const job = await waitForJob(
        api,
        await postJob(api, '/api/backup', { compression }),
        failedOnce,
      );
      expect(job.lastError ?? job.error, JSON.stringify(job)).toMatchObject({
        code: 'STORAGE_FULL',
      });
      expect(job.state).toBe('failed');
      expect(job.attemptsMade).toBe(1);
      expect(job.error?.message).toContain(mountPoint);
      expect(job.error?.message).toContain('local');
      await expectOnlyTheFirstBackup();
    },
  );

  it('the health detail warns once free space is below twice the newest backup', async () => {
    const detail = async () => {
      const response = await api.app.inject({
        method: 'GET',
        url: '/api/backup/health/detail',
        headers: adminHeaders(),
      });
      return (response.json() as { data: { reasons: { code: string; message: string }[] } }).data;
    };
    expect((await detail()).reasons.map((reason) => reason.code)).not.toContain(
      'LOW_SPACE_FOR_BACKUP',
    );
    await leaveFree(Math.floor(first.size * 1.5));
    const warned = (await detail()).reasons.find(
      (reason) => reason.code === 'LOW_SPACE_FOR_BACKUP',
    );
    expect(warned, 'no LOW_SPACE_FOR_BACKUP reason').toMatchObject({ severity: 'warning' });
    await rm(FILLER);
  });

  it('a backup that surely cannot fit is refused before anything is written', async () => {
    await leaveFree(Math.floor(first.size / 2));
    try {
      const { result: job, names } = await filesCreatedDuring(() =>
        postJob(api, '/api/backup', {}).then((jobId) => waitForJob(api, jobId, failedOnce)),
      );
      expect(job.lastError ?? job.error, JSON.stringify(job)).toMatchObject({
        code: 'STORAGE_FULL',
      });
      expect(job.state).toBe('failed');
      expect(job.attemptsMade).toBe(1);
      expect(job.error?.message).toMatch(/free/);
      expect(job.error?.message).toContain(mountPoint);
      expect(names, 'files the refused backup created').toEqual([]);
      await expectOnlyTheFirstBackup();
    } finally {
      await rm(FILLER, { force: true });
    }
  });

  it('a directory-format backup is refused before anything is written when its uncompressed dump surely cannot fit', async () => {
    const { result: job, names } = await filesCreatedDuring(() =>
      postJob(api, '/api/backup', { format: 'directory', jobs: 2 }).then((jobId) =>
        waitForJob(api, jobId, failedOnce),
      ),
    );
    expect(job.lastError ?? job.error, JSON.stringify(job)).toMatchObject({
      code: 'STORAGE_FULL',
    });
    expect(job.state).toBe('failed');
    expect(job.attemptsMade).toBe(1);
    // The message says why a directory-format backup needs more: the dump whole on disk first.
    expect(job.error?.message).toMatch(/directory-format backup/);
    expect(job.error?.message).toMatch(/uncompressed dump in a scratch directory/);
    expect(job.error?.message).toContain(mountPoint);
    expect(names, 'files the refused backup created').toEqual([]);
    await expectOnlyTheFirstBackup();
  });

  describe('restore', () => {
    const target = () => `${env.name}_copy`;
    const restore = () =>
      postJob(api, `/api/backup/${first.id}/restore`, { target: target(), confirm: target() });
    const databasesLeft = () =>
      withClient(env.serverUrl, async (client) => {
        // This deployment's temporary databases: other files restore on the same server.
        const { rows } = await client.query<{ datname: string }>(
          'SELECT datname FROM pg_database WHERE datname = $1 OR starts_with(datname, $2)',
          [target(), scratchDatabasePrefix('restore', env.env.LOCK_NAMESPACE ?? env.name)],
        );
        return rows.map((row) => row.datname);
      });
    const scratchFiles = async () =>
      (await readdir(mountPoint)).filter((name) => name.endsWith('.partial'));
    let before: string[];

    beforeAll(async () => {
      before = await databasesLeft();
    });

    it('is refused before it starts when the decompressed copy surely cannot fit', async () => {
      await leaveFree(Math.floor(first.size * 1.5));
      try {
        const job = await waitForJob(api, await restore(), failedOnce);
        expect(job.lastError ?? job.error, JSON.stringify(job)).toMatchObject({
          code: 'STORAGE_FULL',
        });
        expect(job.state).toBe('failed');
        expect(job.attemptsMade).toBe(1);
        expect(job.error?.message).toMatch(/free/);
        expect(await scratchFiles()).toEqual([]);
        expect(await databasesLeft()).toEqual(before);
      } finally {
        await rm(FILLER, { force: true });
      }
    });

    it('that runs out of space while decompressing fails as STORAGE_FULL, its scratch file gone', async () => {
      const artifact = path.join(mountPoint, first.filename);
      const decompressed = execFileSync('zstd', ['-d', '-c', '-q', artifact], {
        maxBuffer: 64 * 1024 * 1024,
      }).length;
      // Past the early check (twice the artifact), short of the decompressed archive.
      const room = Math.floor((2 * first.size + decompressed) / 2);
      expect(room, 'the archive compresses too little for this test').toBeGreaterThan(
        2 * first.size + 16 * 1024,
      );
      expect(room).toBeLessThan(decompressed - 16 * 1024);
      await leaveFree(room);
      try {
        const job = await waitForJob(api, await restore(), failedOnce);
        expect(job.lastError ?? job.error, JSON.stringify(job)).toMatchObject({
          code: 'STORAGE_FULL',
        });
        expect(job.state).toBe('failed');
        expect(job.attemptsMade).toBe(1);
        expect(job.error?.message).toContain(mountPoint);
        expect(await scratchFiles()).toEqual([]);
        expect(await databasesLeft()).toEqual(before);
        await expectOnlyTheFirstBackup();
      } finally {
        await rm(FILLER, { force: true });
      }
    });
  });
});

afterAll(async () => {
  if (!skipReason) {
    execFileSync('umount', [mountPoint], { stdio: 'pipe' });
  }
  await rm(mountPoint, { recursive: true, force: true });
});
