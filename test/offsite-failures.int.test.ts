import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import type http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { type BackupManifest, type JobResult, manifestFilename } from '@pgkeep/core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  adminHeaders,
  type PolledJob,
  postJob,
  startApi,
  type TestApi,
  verifyVerdict,
  waitForJob,
} from './support/api.js';
import { panelTables, seedPanelSchema, tableRows } from './support/panel-schema.js';
import {
  type FaultyProxy,
  S3RVER_CREDENTIALS,
  type S3TestServer,
  s3TestClient,
  startFaultyProxy,
  startS3Server,
} from './support/s3-server.js';
import { createTestEnv, dropDatabase, type TestEnv, withClient } from './support/test-env.js';
import { type LogLine, startWorker, type WorkerProcess } from './support/worker-process.js';

const OFFSITE_BUCKET = 'pgkeep-failures';
const BUCKET_ONE = 'pgkeep-one';
const BUCKET_TWO = 'pgkeep-two';
const COPY_ATTEMPTS = 2;

let env: TestEnv;
let s3: S3TestServer;
let proxy: FaultyProxy;
const extraDatabases: string[] = [];

function s3Env(name: string, bucket: string, endpoint: string, prefix: string) {
  const upper = name.toUpperCase();
  return {
    [`S3_${upper}_BUCKET`]: bucket,
    [`S3_${upper}_ENDPOINT`]: endpoint,
    [`S3_${upper}_PREFIX`]: prefix,
    [`S3_${upper}_FORCE_PATH_STYLE`]: 'true',
    [`S3_${upper}_ACCESS_KEY_ID`]: S3RVER_CREDENTIALS.accessKeyId,
    [`S3_${upper}_SECRET_ACCESS_KEY`]: S3RVER_CREDENTIALS.secretAccessKey,
  };
}

/** The requests that write an artifact, or its manifest (never a health probe). */
const writes = {
  artifact: (req: http.IncomingMessage) =>
    (req.method === 'PUT' || req.method === 'POST') && /\/backup-[^/?]+\.dump/.test(req.url ?? ''),
  manifest: (req: http.IncomingMessage) =>
    req.method === 'PUT' && /\/backup-[^/?]+\.manifest\.json/.test(req.url ?? ''),
};
/** Which writes the proxy refuses, when told to refuse some. */
let refusing: keyof typeof writes = 'artifact';

/** A worker and an API (connected to Redis) configured with `overrides` on top of the test's. */
async function startProcesses(overrides: Record<string, string>) {
  const variables = { ...env.env, ...overrides };
  const [api, worker] = await Promise.all([startApi(variables), startWorker(variables)]);
  await vi.waitFor(() => expect(api.services.redis.status).toBe('ready'), {
    timeout: 10_000,
    interval: 20,
  });
  return { api, worker };
}

async function objectKeys(bucket: string, prefix: string): Promise<string[]> {
  const client = s3TestClient(s3.endpoint);
  try {
    const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
    return (listed.Contents ?? []).map((object) => object.Key ?? '').sort();
  } finally {
    client.destroy();
  }
}

async function objectBytes(bucket: string, key: string): Promise<Buffer> {
  const client = s3TestClient(s3.endpoint);
  try {
    const object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    const body = object.Body as { transformToByteArray(): Promise<Uint8Array> };
    return Buffer.from(await body.transformToByteArray());
  } finally {
    client.destroy();
  }
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** The keys a backup has in a bucket: its artifact and its manifest. */
const keysOf = (manifest: BackupManifest, prefix: string) =>
  [`${prefix}${manifest.filename}`, `${prefix}${manifestFilename(manifest.id)}`].sort();

async function getBackup(api: TestApi, id: string) {
  return api.app.inject({ method: 'GET', url: `/api/backup/${id}`, headers: adminHeaders() });
}

async function listedIds(api: TestApi): Promise<string[]> {
  const response = await api.app.inject({
    method: 'GET',
    url: '/api/backup',
    headers: adminHeaders(),
  });
  expect(response.statusCode).toBe(200);
  return (response.json() as { data: BackupManifest[] }).data.map((manifest) => manifest.id);
}

async function runJob(api: TestApi, url: string, body?: unknown): Promise<PolledJob> {
  return waitForJob(api, await postJob(api, url, body), undefined, 90_000);
}

function completed<T>(job: PolledJob): T {
  expect(job.error).toBeNull();
  expect(job.state).toBe('completed');
  return job.result as unknown as T;
}

/**
 * Every `msg` line of one job, once the first has come: a job's state reaches Redis before its
 * last log lines have come through the worker's stdout.
 */
async function jobLines(worker: WorkerProcess, jobId: string, msg: string): Promise<LogLine[]> {
  await worker.waitForLine((line) => line.jobId === jobId && line.msg === msg, 10_000);
  return worker.lines.filter((line) => line.jobId === jobId && line.msg === msg);
}

/** The first line since `from` (an index into the worker's lines) that `match` accepts. */
function lineSince(worker: WorkerProcess, from: number, match: (line: LogLine) => boolean) {
  return worker.waitForLine((line) => worker.lines.indexOf(line) >= from && match(line), 10_000);
}

beforeAll(async () => {
  s3 = await startS3Server([OFFSITE_BUCKET, BUCKET_ONE, BUCKET_TWO]);
  proxy = await startFaultyProxy(s3.endpoint, {
    match: (req) => writes[refusing](req),
    failures: 0,
    mode: 'status-503',
  });
  env = await createTestEnv('offsite_fail', {
    BACKUP_DESTINATIONS: 'local,offsite',
    ...s3Env('offsite', OFFSITE_BUCKET, proxy.endpoint, 'fail/'),
    // The SDK sends each request once, so a refused request fails the copy, and the copy's own
    // retries (from the local copy) are the only ones.
    S3_OFFSITE_MAX_ATTEMPTS: '1',
    BACKUP_COPY_ATTEMPTS: String(COPY_ATTEMPTS),
    BACKUP_COPY_RETRY_DELAY_MS: '0',
    // A failed backup is not run again by BullMQ: one job, one pg_dump.
    BACKUP_ATTEMPTS: '1',
  });
  await seedPanelSchema(env.databaseUrl);
});

afterAll(async () => {
  for (const name of extraDatabases) await dropDatabase(env.serverUrl, name);
  await env?.cleanup();
  await proxy?.stop();
  await s3?.stop();
});

describe('a required bucket copy that fails while the dump streams', () => {
  let api: TestApi;
  let worker: WorkerProcess;

  beforeAll(async () => {
    ({ api, worker } = await startProcesses({}));
  });

  afterAll(async () => {
    await worker?.stop();
    await api?.close();
  });

  it.each(['status-503', 'reset'] as const)(
    'is written again from the local copy after a %s, with one pg_dump',
    async (mode) => {
      proxy.refuseNext(1, mode);
      const refusedBefore = proxy.failed();
      const from = worker.lines.length;
      const jobId = await postJob(api, '/api/backup', { label: `copy refused: ${mode}` });
      const manifest = completed<BackupManifest>(await waitForJob(api, jobId));

      expect(proxy.failed() - refusedBefore).toBe(1);
      expect(manifest.copies.map((copy) => copy.destination)).toEqual(['local', 'offsite']);
      expect(manifest.failedCopies).toEqual([]);
      expect(await jobLines(worker, jobId, 'backup started')).toHaveLength(1);
      await lineSince(
        worker,
        from,
        (line) =>
          line.msg === 'copy written again from the local copy' &&
          line.destination === 'offsite' &&
          line.attempt === 1,
      );
      // The bucket holds exactly the bytes the manifest describes, as does the local copy.
      const stored = await objectBytes(OFFSITE_BUCKET, `fail/${manifest.filename}`);
      expect(stored.length).toBe(manifest.size);
      expect(sha256(stored)).toBe(manifest.sha256);
      expect(sha256(await readFile(path.join(env.backupDir, manifest.filename)))).toBe(
        manifest.sha256,
      );
      expect(await objectKeys(OFFSITE_BUCKET, `fail/backup-${manifest.id}`)).toEqual(
        keysOf(manifest, 'fail/'),
      );
    },
  );

  it('fails the backup with COPY_FAILED when every try fails, and leaves nothing anywhere', async () => {
    proxy.refuseNext(1_000, 'status-503');
    const refusedBefore = proxy.failed();
    const listedBefore = await listedIds(api);
    const jobId = await postJob(api, '/api/backup', { label: 'copy keeps failing' });
    const job = await waitForJob(api, jobId);
    proxy.refuseNext(0);

    expect(job.state).toBe('failed');
    expect(job.error?.code).toBe('COPY_FAILED');
    expect(job.error?.message).toContain('offsite');
    expect(job.attemptsMade).toBe(1);
    // The write while the dump streamed, then every retry from the local copy.
    expect(proxy.failed() - refusedBefore).toBe(1 + COPY_ATTEMPTS);
    const started = await jobLines(worker, jobId, 'backup started');
    expect(started).toHaveLength(1);
    const backupId = started[0]?.backupId as string;
    expect(backupId).toBeTruthy();

    expect(await listedIds(api)).toEqual(listedBefore);
    expect((await getBackup(api, backupId)).statusCode).toBe(404);
    expect((await readdir(env.backupDir)).filter((name) => name.includes(backupId))).toEqual([]);
    expect(await objectKeys(OFFSITE_BUCKET, `fail/backup-${backupId}`)).toEqual([]);
  });

  it('fails the backup with COPY_FAILED when the bucket refuses the manifest, removing every copy', async () => {
    refusing = 'manifest';
    proxy.refuseNext(1, 'status-503');
    const listedBefore = await listedIds(api);
    const jobId = await postJob(api, '/api/backup', { label: 'manifest refused' });
    const job = await waitForJob(api, jobId).finally(() => {
      refusing = 'artifact';
    });

    expect(job.state).toBe('failed');
    expect(job.error?.code).toBe('COPY_FAILED');
    expect(job.error?.message).toContain('manifest');
    const [started] = await jobLines(worker, jobId, 'backup started');
    const backupId = started?.backupId as string;
    expect(backupId).toBeTruthy();
    expect(await listedIds(api)).toEqual(listedBefore);
    expect((await readdir(env.backupDir)).filter((name) => name.includes(backupId))).toEqual([]);
    // The artifact reached the bucket before its manifest was refused: it is gone again.
    expect(await objectKeys(OFFSITE_BUCKET, `fail/backup-${backupId}`)).toEqual([]);
  });
});

describe('an optional bucket copy that keeps failing', () => {
  let api: TestApi;
  let worker: WorkerProcess;

  beforeAll(async () => {
    ({ api, worker } = await startProcesses({ S3_OFFSITE_REQUIRED: 'false' }));
  });

  afterAll(async () => {
    await worker?.stop();
    await api?.close();
  });

  it('completes the backup with the local copy only, and the catalog says which copy failed', async () => {
    proxy.refuseNext(1_000, 'status-503');
    const from = worker.lines.length;
    const jobId = await postJob(api, '/api/backup', { label: 'optional copy fails' });
    const manifest = completed<BackupManifest>(await waitForJob(api, jobId));
    proxy.refuseNext(0);

    expect(manifest.copies.map((copy) => copy.destination)).toEqual(['local']);
    expect(manifest.failedCopies).toEqual([
      { destination: 'offsite', code: 'COPY_FAILED', message: expect.stringContaining('503') },
    ]);
    expect(await jobLines(worker, jobId, 'backup started')).toHaveLength(1);
    await lineSince(
      worker,
      from,
      (line) => line.msg === 'optional copy not written' && line.destination === 'offsite',
    );
    const listed = await getBackup(api, manifest.id);
    expect(listed.statusCode).toBe(200);
    expect((listed.json() as { data: BackupManifest }).data.failedCopies).toEqual(
      manifest.failedCopies,
    );
    expect(await objectKeys(OFFSITE_BUCKET, `fail/backup-${manifest.id}`)).toEqual([]);

    // The local copy is whole, and it is the one a download serves.
    const download = await api.app.inject({
      method: 'GET',
      url: `/api/backup/${manifest.id}/download`,
      headers: adminHeaders(),
    });
    expect(download.statusCode).toBe(200);
    expect(download.headers['x-backup-copy']).toBe('local');
    expect(sha256(download.rawPayload)).toBe(manifest.sha256);
  });

  it('copies the next backup to the bucket again once it answers', async () => {
    const manifest = completed<BackupManifest>(await runJob(api, '/api/backup', {}));
    expect(manifest.copies.map((copy) => copy.destination)).toEqual(['local', 'offsite']);
    expect(manifest.failedCopies).toEqual([]);
  });
});

describe('two buckets and no local copy', () => {
  let api: TestApi;
  let worker: WorkerProcess;
  let backupDir: string;

  beforeAll(async () => {
    // A catalog of its own: the backups of the cases above are not this deployment's.
    backupDir = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-two-buckets-'));
    ({ api, worker } = await startProcesses({
      BACKUP_DIR: backupDir,
      BACKUP_DESTINATIONS: 'one,two',
      ...s3Env('one', BUCKET_ONE, s3.endpoint, 'db/'),
      ...s3Env('two', BUCKET_TWO, s3.endpoint, ''),
    }));
  });

  afterAll(async () => {
    await worker?.stop();
    await api?.close();
    if (backupDir) await rm(backupDir, { recursive: true, force: true });
  });

  const backup = async (label: string) =>
    completed<BackupManifest>(await runJob(api, '/api/backup', { label }));

  it('copies a backup to both buckets and lists it, with only its manifest on local disk', async () => {
    const manifest = await backup('two buckets');
    expect(manifest.copies.map((copy) => [copy.destination, copy.location])).toEqual([
      ['one', `s3://${BUCKET_ONE}/db/${manifest.filename}`],
      ['two', `s3://${BUCKET_TWO}/${manifest.filename}`],
    ]);
    for (const [bucket, prefix] of [
      [BUCKET_ONE, 'db/'],
      [BUCKET_TWO, ''],
    ] as const) {
      expect(await objectKeys(bucket, `${prefix}backup-${manifest.id}`)).toEqual(
        keysOf(manifest, prefix),
      );
      const stored = await objectBytes(bucket, `${prefix}${manifest.filename}`);
      expect(stored.length).toBe(manifest.size);
      expect(sha256(stored)).toBe(manifest.sha256);
    }
    expect(await listedIds(api)).toContain(manifest.id);
    expect((await readdir(backupDir)).filter((name) => name.includes(manifest.id))).toEqual([
      manifestFilename(manifest.id),
    ]);
  });

  it('restores from the first bucket, row for row', async () => {
    const manifest = await backup('to restore');
    const before = await Promise.all(panelTables.map((table) => tableRows(env.databaseUrl, table)));
    await withClient(env.databaseUrl, (client) =>
      client.query(
        `DELETE FROM "WhatsappMessage" WHERE id % 3 = 0; UPDATE "Payment" SET note = 'x'`,
      ),
    );

    const jobId = await postJob(api, `/api/backup/${manifest.id}/restore`, { confirm: env.name });
    const result = completed<JobResult<'restore'>>(
      await waitForJob(api, jobId, undefined, 120_000),
    );
    if (result.previousDatabase) extraDatabases.push(result.previousDatabase);
    const after = await Promise.all(panelTables.map((table) => tableRows(env.databaseUrl, table)));
    expect(after).toEqual(before);
    expect(await jobLines(worker, jobId, 'restore started')).toEqual([
      expect.objectContaining({ copy: 'one' }),
    ]);
    // The download went to a scratch file in BACKUP_DIR, removed since.
    expect((await readdir(backupDir)).filter((name) => name.endsWith('.partial'))).toEqual([]);
  });

  it('verifies each copy: one missing from a bucket fails its check, the other is read', async () => {
    const manifest = await backup('one copy lost');
    const client = s3TestClient(s3.endpoint);
    await client.send(
      new DeleteObjectCommand({ Bucket: BUCKET_ONE, Key: `db/${manifest.filename}` }),
    );
    client.destroy();

    const result = verifyVerdict(await runJob(api, `/api/backup/${manifest.id}/verify`, {}));
    expect(result.ok).toBe(false);
    expect(result.checks).toEqual([
      { name: 'sha256', ok: false, detail: expect.stringContaining('missing from one') },
      { name: 'sha256', ok: true, detail: expect.stringMatching(/^two: /) },
      { name: 'archive-read', ok: true, detail: expect.stringMatching(/^two: /) },
    ]);
  });

  it('deletes a backup from both buckets and the catalog', async () => {
    const manifest = await backup('to delete');
    const result = completed<JobResult<'delete'>>(
      await runJob(api, `DELETE /api/backup/${manifest.id}`),
    );
    expect(result.deleted).toEqual([manifest.id]);
    expect(await objectKeys(BUCKET_ONE, `db/backup-${manifest.id}`)).toEqual([]);
    expect(await objectKeys(BUCKET_TWO, `backup-${manifest.id}`)).toEqual([]);
    expect((await getBackup(api, manifest.id)).statusCode).toBe(404);
    expect((await readdir(backupDir)).filter((name) => name.includes(manifest.id))).toEqual([]);
  });

  it('cleans up old backups in every bucket, keeping the newest', async () => {
    await backup('old');
    const newest = await backup('newest');
    const older = (await listedIds(api)).filter((id) => id !== newest.id);
    expect(older.length).toBeGreaterThanOrEqual(3);

    const result = completed<JobResult<'cleanup'>>(
      await runJob(api, '/api/backup/clean?keepLast=1'),
    );
    expect(result.deleted.sort()).toEqual(older.sort());
    expect(result.kept).toEqual([newest.id]);
    expect(await listedIds(api)).toEqual([newest.id]);
    expect(await objectKeys(BUCKET_ONE, 'db/')).toEqual(keysOf(newest, 'db/'));
    expect(await objectKeys(BUCKET_TWO, '')).toEqual(keysOf(newest, ''));
    expect(await readdir(backupDir)).toEqual([manifestFilename(newest.id)]);
  });
});

describe('two buckets, no local copy, and the second refusing a dump larger than one upload part', () => {
  let big: TestEnv;
  let api: TestApi;
  let worker: WorkerProcess;

  beforeAll(async () => {
    big = await createTestEnv('offsite_fail_big', {
      BACKUP_DESTINATIONS: 'one,two',
      ...s3Env('one', BUCKET_ONE, s3.endpoint, 'big/'),
      ...s3Env('two', BUCKET_TWO, proxy.endpoint, 'big/'),
      S3_ONE_PART_SIZE_MB: '5',
      S3_TWO_PART_SIZE_MB: '5',
      S3_TWO_MAX_ATTEMPTS: '1',
      BACKUP_ATTEMPTS: '1',
    });
    // About 14 MiB of dump: pg_dump is still writing when the second bucket refuses.
    await withClient(big.databaseUrl, (client) =>
      client.query(`CREATE TABLE filler AS
        SELECT g AS id, repeat(md5(g::text), 15) AS body FROM generate_series(1, 30000) g`),
    );
    [api, worker] = await Promise.all([startApi(big.env), startWorker(big.env)]);
  });

  afterAll(async () => {
    proxy.refuseNext(0);
    await worker?.stop();
    await api?.close();
    await big?.cleanup();
  });

  it('fails the backup with COPY_FAILED naming the bucket, and leaves nothing in either', async () => {
    proxy.refuseNext(1_000, 'status-503');
    const jobId = await postJob(api, '/api/backup', { compression: 'none' });
    const job = await waitForJob(api, jobId);
    proxy.refuseNext(0);

    expect(job.state).toBe('failed');
    expect(job.attemptsMade).toBe(1);
    const [started] = await jobLines(worker, jobId, 'backup started');
    const backupId = started?.backupId as string;
    expect(backupId).toBeTruthy();
    expect(await listedIds(api)).toEqual([]);
    expect(await objectKeys(BUCKET_ONE, `big/backup-${backupId}`)).toEqual([]);
    expect(await objectKeys(BUCKET_TWO, `big/backup-${backupId}`)).toEqual([]);
    // The copy's failure, not what it did to the rest: the write to bucket one was aborted and
    // pg_dump's output stopped being read, neither of which is the cause.
    expect(job.error?.code, job.error?.message).toBe('COPY_FAILED');
    expect(job.error?.message).toContain('two');
  });
});
