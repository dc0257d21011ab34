import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import {
  artifactFilename,
  type BackupManifest,
  type JobResult,
  manifestFilename,
  newBackupId,
} from '@pgkeep/core';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  adminHeaders,
  json,
  type PolledJob,
  postJob,
  startConnectedApi,
  type TestApi,
  verifyVerdict,
  waitForJob,
} from './support/api.js';
import { root } from './support/processes.js';
import {
  S3RVER_CREDENTIALS,
  type S3TestServer,
  s3TestClient,
  startS3Server,
} from './support/s3-server.js';
import {
  createDatabase,
  createTestEnv,
  dropDatabase,
  type TestEnv,
  urlWithDatabase,
  withClient,
} from './support/test-env.js';
import { startWorker, type WorkerProcess } from './support/worker-process.js';

/**
 * Directory-format backups (pg_dump --format=directory --jobs): one tar per backup in every
 * destination, restored, verified and table-restored like any other; a failed pg_dump and a
 * changed artifact leave nothing behind and the live database untouched.
 */

const BUCKET = 'pgkeep-directory';
const TRICKY_SCHEMA = 'Other Schema';
const TRICKY_TABLE = 'Ord"er;s. DROP ñ';
const quoted = (name: string) => `"${name.replaceAll('"', '""')}"`;
const TRICKY = `${quoted(TRICKY_SCHEMA)}.${quoted(TRICKY_TABLE)}`;
const BIG_TABLES = ['big_1', 'big_2', 'big_3'];

let s3: S3TestServer;
let env: TestEnv;
const extraDatabases: string[] = [];

function s3Env(endpoint: string): Record<string, string> {
  return {
    S3_OFFSITE_BUCKET: BUCKET,
    S3_OFFSITE_ENDPOINT: endpoint,
    S3_OFFSITE_PREFIX: 'dir/',
    S3_OFFSITE_FORCE_PATH_STYLE: 'true',
    S3_OFFSITE_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
    S3_OFFSITE_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
  };
}

/** Tables of every kind a dump must carry, and a few big ones for pg_dump's jobs to share. */
async function seed(url: string): Promise<void> {
  await withClient(url, async (client) => {
    await client.query(`
      CREATE TABLE "User" (id serial PRIMARY KEY, email text NOT NULL UNIQUE, settings jsonb);
      INSERT INTO "User" (email, settings)
        SELECT 'user' || g || '@example.com', jsonb_build_object('n', g) FROM generate_series(1, 300) g;
      CREATE SCHEMA ${quoted(TRICKY_SCHEMA)};
      CREATE TABLE ${TRICKY} (id int PRIMARY KEY, note text);
      INSERT INTO ${TRICKY} SELECT g, E'tab\\there, "quote", line\\nbreak ' || g FROM generate_series(1, 77) g;
      CREATE TABLE "Empty" (id int PRIMARY KEY, body text);
      CREATE SCHEMA "Sales";
      CREATE TABLE "Sales"."Order$Lines" (id int PRIMARY KEY, qty int NOT NULL);
      INSERT INTO "Sales"."Order$Lines" SELECT g, g * 3 FROM generate_series(1, 80) g;
      CREATE TABLE events (id int NOT NULL, at date NOT NULL, body text, PRIMARY KEY (id, at))
        PARTITION BY RANGE (at);
      CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
      CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
      INSERT INTO events SELECT g, date '2025-01-01' + g % 700, 'e ' || g FROM generate_series(1, 1500) g;
      CREATE TABLE lock_me (id int PRIMARY KEY);
      INSERT INTO lock_me SELECT generate_series(1, 10);
      SELECT lo_from_bytea(0, convert_to('a large object, kept by pg_dump', 'UTF8'));
    `);
    for (const table of BIG_TABLES) {
      await client.query(
        `CREATE TABLE ${table} AS SELECT g AS id, md5(g::text) || repeat('x', 120) AS body
         FROM generate_series(1, 120000) g`,
      );
    }
    // pg_dump hands the biggest tables to its jobs first, by relpages.
    await client.query('VACUUM ANALYZE');
  });
}

/** Row count and a checksum of every table, and the large objects: "the data", to compare. */
async function fingerprint(url: string): Promise<Record<string, string>> {
  return withClient(url, async (client) => {
    const { rows: tables } = await client.query<{ schema: string; name: string }>(
      `SELECT n.nspname AS schema, c.relname AS name FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
         AND n.nspname NOT LIKE 'pg\\_toast%' ORDER BY 1, 2`,
    );
    const result: Record<string, string> = {};
    for (const { schema, name } of tables) {
      const relation = `${client.escapeIdentifier(schema)}.${client.escapeIdentifier(name)}`;
      const { rows } = await client.query<{ n: string; sum: string | null }>(
        `SELECT count(*)::text AS n, md5(string_agg(t::text, E'\\n' ORDER BY t::text)) AS sum
         FROM ${relation} t`,
      );
      result[`${schema}.${name}`] = `${rows[0]?.n} ${rows[0]?.sum ?? '-'}`;
    }
    const { rows: objects } = await client.query<{ data: string }>(
      'SELECT convert_from(lo_get(oid), $1) AS data FROM pg_largeobject_metadata ORDER BY oid',
      ['UTF8'],
    );
    result['large objects'] = objects.map((row) => row.data).join('|');
    return result;
  });
}

async function runJob(api: TestApi, url: string, body?: unknown): Promise<PolledJob> {
  return waitForJob(api, await postJob(api, url, body), undefined, 120_000);
}

function completed<T>(job: PolledJob): T {
  expect(job.error, JSON.stringify(job.error)).toBeNull();
  expect(job.state).toBe('completed');
  return job.result as unknown as T;
}

async function restore(api: TestApi, id: string, target = env.name): Promise<PolledJob> {
  const job = await runJob(api, `/api/backup/${id}/restore`, { confirm: target, target });
  const previous = (job.result as JobResult<'restore'> | null)?.previousDatabase;
  if (previous) extraDatabases.push(previous);
  return job;
}

/** What BACKUP_DIR holds besides the catalog marker files. */
async function backupDirEntries(): Promise<string[]> {
  return (await readdir(env.backupDir)).filter((name) => !name.startsWith('.')).sort();
}

async function bucketKeys(): Promise<string[]> {
  const listed = await s3TestClient(s3.endpoint).send(
    new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'dir/' }),
  );
  return (listed.Contents ?? []).map((object) => object.Key ?? '').sort();
}

beforeAll(async () => {
  s3 = await startS3Server([BUCKET]);
  env = await createTestEnv('dirdump', {
    BACKUP_DESTINATIONS: 'local,offsite',
    BACKUP_FORMAT: 'custom',
    ...s3Env(''),
  });
  Object.assign(env.env, s3Env(s3.endpoint));
  await seed(env.databaseUrl);
});

afterAll(async () => {
  for (const name of extraDatabases) await dropDatabase(env.serverUrl, name);
  await env?.cleanup();
  await s3?.stop();
});

describe('directory-format backups, in BACKUP_DIR and a bucket', () => {
  let api: TestApi;
  let worker: WorkerProcess;
  let manifest: BackupManifest;
  let atBackup: Record<string, string>;

  beforeAll(async () => {
    [api, worker] = await Promise.all([startConnectedApi(env.env), startWorker(env.env)]);
    atBackup = await fingerprint(env.databaseUrl);
    manifest = completed<BackupManifest>(
      await runJob(api, '/api/backup', { format: 'directory', jobs: 3 }),
    );
  });

  afterAll(async () => {
    await worker?.stop();
    await api?.close();
  });

  it('writes one tar.zst per backup in every destination, its dump described in the manifest', async () => {
    expect(manifest).toMatchObject({
      format: 'directory',
      compression: 'zstd',
      filename: `backup-${manifest.id}.dir.tar.zst`,
      directory: { jobs: 3 },
      encryption: null,
    });
    // toc.dat, one file per table with rows or not, the large object's two files.
    expect(manifest.directory?.files).toBeGreaterThanOrEqual(10);
    expect(manifest.directory?.bytes).toBeGreaterThan(3 * 120_000 * 150);
    expect(manifest.size).toBeLessThan(manifest.directory?.bytes ?? 0);
    expect(manifest.rowCounts).toMatchObject({
      'public.User': 300,
      [`${TRICKY_SCHEMA}.${TRICKY_TABLE}`]: 77,
      'public.Empty': 0,
      'public.events_2025': expect.any(Number),
      'public.big_1': 120_000,
    });
    expect(manifest.rowCounts).not.toHaveProperty('public.events');
    expect(manifest.copies.map((copy) => copy.destination).sort()).toEqual(['local', 'offsite']);

    // The local copy and the bucket's hold the same bytes, the manifest's.
    const local = await readFile(path.join(env.backupDir, manifest.filename));
    const object = await s3TestClient(s3.endpoint).send(
      new GetObjectCommand({ Bucket: BUCKET, Key: `dir/${manifest.filename}` }),
    );
    const remote = Buffer.from(
      await (object.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
    );
    expect(remote.equals(local)).toBe(true);
    expect(local.length).toBe(manifest.size);
    // Nothing else: no scratch directory left, one artifact and one manifest.
    expect(await backupDirEntries()).toEqual([manifest.filename, manifestFilename(manifest.id)]);
    expect(await bucketKeys()).toEqual(
      [`dir/${manifest.filename}`, `dir/${manifestFilename(manifest.id)}`].sort(),
    );
  });

  it('is downloaded as it is stored, under its own name', async () => {
    const response = await api.app.inject({
      method: 'GET',
      url: `/api/backup/${manifest.id}/download`,
      headers: adminHeaders(),
    });
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-disposition']).toBe(
      `attachment; filename="${manifest.filename}"`,
    );
    expect(
      response.rawPayload.equals(await readFile(path.join(env.backupDir, manifest.filename))),
    ).toBe(true);
  });

  it('is a tar of pg_dump directory that zstd, tar and pg_restore -Fd -j restore by hand', async () => {
    const scratch = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-by-hand-'));
    const byHand = `${env.name}_by_hand`;
    extraDatabases.push(byHand);
    try {
      await promisify(execFile)('sh', [
        '-c',
        'zstd -d -c -q "$1" | tar -x -C "$2"',
        'sh',
        path.join(env.backupDir, manifest.filename),
        scratch,
      ]);
      expect((await readdir(scratch)).sort()).toContain('toc.dat');
      await createDatabase(env.serverUrl, byHand);
      await promisify(execFile)('pg_restore', [
        '-Fd',
        '-j',
        '2',
        '--exit-on-error',
        `--dbname=${urlWithDatabase(env.serverUrl, byHand)}`,
        scratch,
      ]);
      expect(await fingerprint(urlWithDatabase(env.serverUrl, byHand))).toEqual(atBackup);
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  });

  it('restores into the database: every table, partition and large object as at the backup', async () => {
    await withClient(env.databaseUrl, (client) =>
      client.query(`
        DELETE FROM "User" WHERE id % 3 = 0;
        INSERT INTO "Empty" VALUES (1, 'added later');
        DROP TABLE ${TRICKY};
        UPDATE events SET body = 'changed' WHERE id < 100;
        TRUNCATE big_2;
      `),
    );
    expect(await fingerprint(env.databaseUrl)).not.toEqual(atBackup);
    const job = await restore(api, manifest.id);
    const result = completed<JobResult<'restore'>>(job);
    expect(result.mode).toBe('database');
    expect(await fingerprint(env.databaseUrl)).toEqual(atBackup);
    // The extracted scratch directory is gone.
    expect(await backupDirEntries()).toEqual([manifest.filename, manifestFilename(manifest.id)]);
  });

  it('passes a verify with a scratch restore', async () => {
    const verdict = verifyVerdict(
      await runJob(api, `/api/backup/${manifest.id}/verify`, { restore: true }),
    );
    expect(verdict.checks.map((check) => `${check.name}:${check.ok}`)).toEqual([
      'sha256:true',
      'sha256:true',
      'archive-read:true',
      'scratch-restore:true',
      'row-counts:true',
    ]);
    expect(await backupDirEntries()).toEqual([manifest.filename, manifestFilename(manifest.id)]);
  });

  it('restores from the bucket when the local copy has changed', async () => {
    const file = path.join(env.backupDir, manifest.filename);
    const original = await readFile(file);
    const changed = Buffer.from(original);
    const middle = Math.floor(changed.length / 2);
    changed[middle] = (changed[middle] ?? 0) ^ 0xff;
    await writeFile(file, changed);
    try {
      await withClient(env.databaseUrl, (client) => client.query('DELETE FROM "User"'));
      completed(await restore(api, manifest.id));
      expect(await fingerprint(env.databaseUrl)).toEqual(atBackup);
    } finally {
      await writeFile(file, original);
    }
  });

  it('restores a table backup of its tables alone', async () => {
    const tables = await runJob(api, '/api/backup', {
      format: 'directory',
      jobs: 2,
      tables: ['Sales.Order$Lines', 'Empty'],
    });
    const tableBackup = completed<BackupManifest>(tables);
    expect(tableBackup.rowCounts).toEqual({ 'Sales.Order$Lines': 80, 'public.Empty': 0 });
    await withClient(env.databaseUrl, (client) =>
      client.query(`
        DELETE FROM "Sales"."Order$Lines" WHERE id > 10;
        INSERT INTO "Empty" VALUES (7, 'not in the backup');
        INSERT INTO "User" (email) VALUES ('kept@example.com');
      `),
    );
    const job = await restore(api, tableBackup.id);
    expect(completed<JobResult<'restore'>>(job).mode).toBe('tables');
    const now = await fingerprint(env.databaseUrl);
    expect(now['Sales.Order$Lines']).toBe(atBackup['Sales.Order$Lines']);
    expect(now['public.Empty']).toBe(atBackup['public.Empty']);
    // The other tables are left as they are.
    expect(now['public.User']).not.toBe(atBackup['public.User']);
    await withClient(env.databaseUrl, (client) =>
      client.query(`DELETE FROM "User" WHERE email = 'kept@example.com'`),
    );
  });

  it('refuses a changed artifact with CHECKSUM_MISMATCH and leaves the database as it was', async () => {
    // A backup of the same bytes with only a local copy, then one byte changed.
    const id = newBackupId();
    const filename = artifactFilename(id, 'directory', 'zstd');
    const copy: BackupManifest = {
      ...manifest,
      id,
      filename,
      jobId: null,
      copies: manifest.copies
        .filter((entry) => entry.destination === 'local')
        .map((entry) => ({ ...entry, location: path.join(env.backupDir, filename) })),
    };
    const bytes = await readFile(path.join(env.backupDir, manifest.filename));
    const third = Math.floor(bytes.length / 3);
    bytes[third] = (bytes[third] ?? 0) ^ 0x01;
    await writeFile(path.join(env.backupDir, filename), bytes);
    await writeFile(path.join(env.backupDir, manifestFilename(id)), JSON.stringify(copy));
    await withClient(env.databaseUrl, (client) =>
      client.query(`INSERT INTO "Empty" VALUES (42, 'live data')`),
    );
    const before = await fingerprint(env.databaseUrl);
    const job = await restore(api, id);
    expect(job.state).toBe('failed');
    expect(job.error?.code, job.error?.message).toBe('CHECKSUM_MISMATCH');
    expect(job.attemptsMade).toBe(1);
    expect(await fingerprint(env.databaseUrl)).toEqual(before);
    // No scratch directory was left behind.
    expect((await backupDirEntries()).filter((name) => name.endsWith('.partial'))).toEqual([]);
    await rm(path.join(env.backupDir, filename));
    await rm(path.join(env.backupDir, manifestFilename(id)));
    await withClient(env.databaseUrl, (client) => client.query('DELETE FROM "Empty"'));
  });

  it('leaves no artifact, manifest or scratch directory when pg_dump fails halfway', async () => {
    // Sizes as they are now (a restore leaves a table without indexes at relpages 0).
    await withClient(env.databaseUrl, (client) => client.query('ANALYZE'));
    const before = await backupDirEntries();
    const keysBefore = await bucketKeys();
    const jobId = await postJob(api, '/api/backup', { format: 'directory', jobs: 2 });
    // Once pg_dump's jobs copy the big tables, another session asks for lock_me exclusively:
    // the job that reaches it next finds the lock requested and stops the whole dump (pg_dump
    // takes its jobs' locks with NOWAIT, not to deadlock with its leader).
    await vi.waitFor(
      async () => {
        const copying = await withClient(env.serverUrl, async (client) => {
          const { rows } = await client.query(
            `SELECT 1 FROM pg_stat_activity
             WHERE datname = $1 AND application_name = 'pgkeep' AND query LIKE 'COPY public.big_%'`,
            [env.name],
          );
          return rows.length;
        });
        expect(copying).toBeGreaterThan(0);
      },
      { timeout: 30_000, interval: 5 },
    );
    const locker = new pg.Client({ connectionString: env.databaseUrl });
    await locker.connect();
    try {
      await locker.query(`BEGIN; SET LOCAL lock_timeout = '60s'`);
      const locked = locker.query('LOCK TABLE lock_me IN ACCESS EXCLUSIVE MODE');
      // Granted once pg_dump (or the backup's own snapshot session) has let go of the table.
      void locked.then(
        () => locker.query('ROLLBACK'),
        () => {},
      );
      const job = await waitForJob(api, jobId, undefined, 90_000);
      expect(job.state).toBe('failed');
      expect(job.error?.code, job.error?.message).toBe('PG_DUMP_FAILED');
      expect(job.error?.message).toMatch(/lock/);
      await locked;
    } finally {
      await locker.end().catch(() => {});
    }
    expect(await backupDirEntries()).toEqual(before);
    expect(await bucketKeys()).toEqual(keysBefore);
  });

  it("sweeps a dead worker's scratch directory at the next start, and the backup is made again", async () => {
    const jobId = await postJob(api, '/api/backup', { format: 'directory', jobs: 2 });
    const scratch = await vi.waitFor(
      async () => {
        const found = (await readdir(env.backupDir, { withFileTypes: true })).find(
          (entry) =>
            entry.isDirectory() && /^backup-.+\.dump-[0-9a-f]{8}\.partial$/.test(entry.name),
        );
        if (!found) throw new Error('no scratch directory yet');
        expect((await readdir(path.join(env.backupDir, found.name))).length).toBeGreaterThan(0);
        return found.name;
      },
      { timeout: 30_000, interval: 10 },
    );
    await worker.kill();
    worker = await startWorker(env.env);
    const swept = await worker.waitForLine(
      (line) => line.msg === 'removed leftovers of unfinished backups',
    );
    expect(swept.removed).toContain(scratch);
    const job = await waitForJob(api, jobId, (polled) => polled.state === 'completed', 120_000);
    const remade = job.result as unknown as BackupManifest;
    expect(remade.format).toBe('directory');
    const entries = await backupDirEntries();
    expect(entries.filter((name) => name.endsWith('.partial'))).toEqual([]);
    expect(entries).toEqual(expect.arrayContaining([remade.filename, manifestFilename(remade.id)]));
  });

  it.each([
    { name: 'jobs 0', body: { format: 'directory', jobs: 0 } },
    { name: 'jobs 33', body: { format: 'directory', jobs: 33 } },
    { name: 'jobs "x"', body: { format: 'directory', jobs: 'x' } },
    { name: 'jobs 2.5', body: { format: 'directory', jobs: 2.5 } },
    { name: 'jobs with format custom', body: { format: 'custom', jobs: 2 } },
    { name: "jobs with the target's custom format", body: { jobs: 2 } },
  ])('refuses $name with 400 VALIDATION_ERROR', async ({ body }) => {
    const response = await api.app.inject({
      method: 'POST',
      url: '/api/backup',
      headers: adminHeaders(),
      payload: body,
    });
    expect(response.statusCode, response.body).toBe(400);
    expect(json(response).error.code).toBe('VALIDATION_ERROR');
    expect(json(response).error.message).toMatch(/jobs/);
  });
});

describe('encrypted directory-format backups', () => {
  const key = randomBytes(32).toString('base64');
  let api: TestApi;
  let worker: WorkerProcess;

  beforeAll(async () => {
    const encrypted = {
      ...env.env,
      BACKUP_DESTINATIONS: 'local',
      BACKUP_ENCRYPTION_KEY: key,
      BACKUP_FORMAT: 'directory',
      BACKUP_DUMP_JOBS: '2',
    };
    [api, worker] = await Promise.all([startConnectedApi(encrypted), startWorker(encrypted)]);
  });

  afterAll(async () => {
    await worker?.stop();
    await api?.close();
  });

  it('writes ciphertext that restores, and that the decrypt command turns back into the tar', async () => {
    const atBackup = await fingerprint(env.databaseUrl);
    // The target's format and jobs, from BACKUP_FORMAT and BACKUP_DUMP_JOBS.
    const manifest = completed<BackupManifest>(await runJob(api, '/api/backup', {}));
    expect(manifest).toMatchObject({
      format: 'directory',
      filename: `backup-${manifest.id}.dir.tar.zst.enc`,
      directory: { jobs: 2 },
      encryption: { algorithm: 'aes-256-gcm-stream-v1' },
    });
    const file = path.join(env.backupDir, manifest.filename);
    // No zstd frame and no tar header in the clear.
    const stored = await readFile(file);
    expect(stored.includes(Buffer.from('toc.dat'))).toBe(false);
    expect(stored.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))).toBe(false);

    await withClient(env.databaseUrl, (client) => client.query('TRUNCATE big_1, "User" CASCADE'));
    completed(await restore(api, manifest.id));
    expect(await fingerprint(env.databaseUrl)).toEqual(atBackup);

    // decrypt | zstd -d | tar -t: the tar of pg_dump's directory.
    const listing = await new Promise<string>((resolve, reject) => {
      const shell = spawn(
        'sh',
        [
          '-c',
          `"$1" --enable-source-maps apps/worker/dist/cli/decrypt.js --in "$2" --out - | zstd -d -c -q | tar -t`,
          'sh',
          process.execPath,
          file,
        ],
        {
          cwd: root,
          env: { PATH: process.env.PATH, BACKUP_ENCRYPTION_KEY: key },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let out = '';
      let err = '';
      shell.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
      });
      shell.stderr.on('data', (chunk: Buffer) => {
        err += chunk.toString();
      });
      shell.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(err))));
    });
    const names = listing.trim().split('\n');
    expect(names[0]).toBe('toc.dat');
    expect(names).toHaveLength(manifest.directory?.files ?? -1);
  });
});
