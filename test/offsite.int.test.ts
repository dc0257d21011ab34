import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import type { BackupManifest, JobResult } from '@pgkeep/core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { adminHeaders, postJob, startApi, type TestApi, waitForJob } from './support/api.js';
import { panelTables, seedPanelSchema, tableRows } from './support/panel-schema.js';
import { root } from './support/processes.js';
import {
  S3RVER_CREDENTIALS,
  type S3TestServer,
  s3TestClient,
  startS3Server,
} from './support/s3-server.js';
import { createTestEnv, dropDatabase, type TestEnv, withClient } from './support/test-env.js';
import { startWorker, type WorkerProcess } from './support/worker-process.js';

const execFileAsync = promisify(execFile);
const BUCKET = 'pgkeep-offsite';
const KEY = randomBytes(32).toString('base64');

let env: TestEnv;
let s3: S3TestServer;
let api: TestApi;
let worker: WorkerProcess;
const extraDatabases: string[] = [];

function s3Env(endpoint: string, name = 'offsite', prefix = 'prod/'): Record<string, string> {
  const upper = name.toUpperCase();
  return {
    [`S3_${upper}_BUCKET`]: BUCKET,
    [`S3_${upper}_ENDPOINT`]: endpoint,
    [`S3_${upper}_PREFIX`]: prefix,
    [`S3_${upper}_FORCE_PATH_STYLE`]: 'true',
    [`S3_${upper}_ACCESS_KEY_ID`]: S3RVER_CREDENTIALS.accessKeyId,
    [`S3_${upper}_SECRET_ACCESS_KEY`]: S3RVER_CREDENTIALS.secretAccessKey,
  };
}

async function objectKeys(prefix: string): Promise<string[]> {
  const client = s3TestClient(s3.endpoint);
  const listed = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
  client.destroy();
  return (listed.Contents ?? []).map((object) => object.Key ?? '').sort();
}

async function objectBytes(key: string): Promise<Buffer> {
  const client = s3TestClient(s3.endpoint);
  const object = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  const bytes = Buffer.from(
    await (object.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
  );
  client.destroy();
  return bytes;
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** Every file under `dir` (directories too), with its bytes' checksum and its mtime. */
async function catalogFiles(dir: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    const file = path.join(entry.parentPath, entry.name);
    const { mtimeMs } = await stat(file);
    files[path.relative(dir, file)] = entry.isFile()
      ? `${sha256(await readFile(file))} ${mtimeMs}`
      : `dir ${mtimeMs}`;
  }
  return files;
}

async function backup(body: Record<string, unknown> = {}): Promise<BackupManifest> {
  const jobId = await postJob(api, '/api/backup', body);
  const job = await waitForJob(api, jobId);
  expect(job.error).toBeNull();
  return job.result as unknown as BackupManifest;
}

beforeAll(async () => {
  s3 = await startS3Server([BUCKET]);
  env = await createTestEnv('offsite', {
    BACKUP_DESTINATIONS: 'local,offsite',
    BACKUP_ENCRYPTION_KEY: KEY,
    ...s3Env(''),
  });
  Object.assign(env.env, s3Env(s3.endpoint));
  await seedPanelSchema(env.databaseUrl);
  [api, worker] = await Promise.all([startApi(env.env), startWorker(env.env)]);
});

afterAll(async () => {
  await worker?.stop();
  await api?.close();
  for (const name of extraDatabases) await dropDatabase(env.serverUrl, name);
  await env?.cleanup();
  await s3?.stop();
});

describe('an encrypted backup copied to local disk and an S3 bucket', () => {
  let manifest: BackupManifest;

  beforeAll(async () => {
    manifest = await backup({ label: 'offsite' });
  });

  it('lists both copies with the same checksum and records the key id, never the key', async () => {
    expect(manifest.manifestVersion).toBe(2);
    expect(manifest.filename.endsWith('.dump.zst.enc')).toBe(true);
    expect(manifest.encryption).toMatchObject({ algorithm: 'aes-256-gcm-stream-v1' });
    expect(manifest.encryption?.keyId).toMatch(/^[0-9a-f]{16}$/);
    expect(manifest.copies.map((copy) => copy.destination)).toEqual(['local', 'offsite']);
    for (const copy of manifest.copies) {
      expect(copy).toMatchObject({ size: manifest.size, sha256: manifest.sha256 });
    }
    expect(manifest.copies[1]?.location).toBe(`s3://${BUCKET}/prod/${manifest.filename}`);
    expect(JSON.stringify(manifest)).not.toContain(KEY);
  });

  it('stores the same bytes in the bucket, beside its manifest', async () => {
    expect(await objectKeys('prod/')).toEqual(
      [`prod/${manifest.filename}`, `prod/backup-${manifest.id}.manifest.json`].sort(),
    );
    const stored = await objectBytes(`prod/${manifest.filename}`);
    expect(stored.length).toBe(manifest.size);
    expect(sha256(stored)).toBe(manifest.sha256);
    // Encrypted at rest: the dump's own text does not appear.
    expect(stored.includes(Buffer.from('WhatsappMessage'))).toBe(false);
  });

  it('downloads the exact stored bytes with their checksum, whole and by range', async () => {
    const response = await api.app.inject({
      method: 'GET',
      url: `/api/backup/${manifest.id}/download`,
      headers: adminHeaders(),
    });
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-length']).toBe(String(manifest.size));
    expect(response.headers['x-checksum-sha256']).toBe(manifest.sha256);
    expect(response.headers['content-disposition']).toBe(
      `attachment; filename="${manifest.filename}"`,
    );
    expect(sha256(response.rawPayload)).toBe(manifest.sha256);

    const ranged = await api.app.inject({
      method: 'GET',
      url: `/api/backup/${manifest.id}/download`,
      headers: { ...adminHeaders(), range: 'bytes=10-99' },
    });
    expect(ranged.statusCode).toBe(206);
    expect(ranged.headers['content-range']).toBe(`bytes 10-99/${manifest.size}`);
    expect(ranged.rawPayload.equals(response.rawPayload.subarray(10, 100))).toBe(true);

    const outside = await api.app.inject({
      method: 'GET',
      url: `/api/backup/${manifest.id}/download`,
      headers: { ...adminHeaders(), range: `bytes=${manifest.size}-` },
    });
    expect(outside.statusCode).toBe(416);
    expect(outside.json()).toMatchObject({ error: { code: 'RANGE_NOT_SATISFIABLE' } });
  });

  it('npm run decrypt turns a downloaded artifact back into an archive pg_restore reads', async () => {
    const response = await api.app.inject({
      method: 'GET',
      url: `/api/backup/${manifest.id}/download`,
      headers: adminHeaders(),
    });
    const dir = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-decrypt-'));
    try {
      const encrypted = path.join(dir, manifest.filename);
      await writeFile(encrypted, response.rawPayload);
      const decrypted = path.join(dir, 'backup.dump.zst');
      const decrypt = (input: string, output: string) =>
        execFileAsync(
          process.execPath,
          [
            '--enable-source-maps',
            'apps/worker/dist/cli/decrypt.js',
            '--in',
            input,
            '--out',
            output,
          ],
          { cwd: root, env: { PATH: process.env.PATH, BACKUP_ENCRYPTION_KEY: KEY } },
        );
      await decrypt(encrypted, decrypted);
      const archive = path.join(dir, 'backup.dump');
      await execFileAsync('zstd', ['-d', '-q', decrypted, '-o', archive]);
      const listing = await execFileAsync('pg_restore', ['--list', archive]);
      expect(listing.stdout).toContain('WhatsappMessage');

      // One flipped byte: refused, and no output file is left.
      const tampered = Buffer.from(response.rawPayload);
      const middle = Math.floor(tampered.length / 2);
      tampered[middle] = (tampered[middle] ?? 0) ^ 0x01;
      await writeFile(path.join(dir, 'tampered.enc'), tampered);
      const refused = await decrypt(path.join(dir, 'tampered.enc'), path.join(dir, 'out')).then(
        () => null,
        (error: { code: number; stderr: string }) => error,
      );
      expect(refused?.code).toBe(1);
      expect(refused?.stderr).toContain('DECRYPTION_FAILED');
      expect(await readdir(dir)).not.toContain('out');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses the download without an admin token', async () => {
    const response = await api.app.inject({
      method: 'GET',
      url: `/api/backup/${manifest.id}/download`,
    });
    expect(response.statusCode).toBe(401);
  });

  it('restores from the bucket when the local copy is gone, row for row', async () => {
    const before = await Promise.all(panelTables.map((table) => tableRows(env.databaseUrl, table)));
    await rm(path.join(env.backupDir, manifest.filename));
    await withClient(env.databaseUrl, (client) => client.query('DELETE FROM "WhatsappMessage"'));

    const database = new URL(env.databaseUrl).pathname.slice(1);
    const jobId = await postJob(api, `/api/backup/${manifest.id}/restore`, { confirm: database });
    const job = await waitForJob(api, jobId, undefined, 120_000);
    expect(job.error).toBeNull();
    const result = job.result as JobResult<'restore'>;
    if (result.previousDatabase) extraDatabases.push(result.previousDatabase);
    const after = await Promise.all(panelTables.map((table) => tableRows(env.databaseUrl, table)));
    expect(after).toEqual(before);
    // The local copy was tried first, then the bucket's was used.
    expect(
      worker.lines.some((line) => line.msg === 'restore started' && line.copy === 'offsite'),
    ).toBe(true);
    // The scratch file of the download is gone.
    expect((await readdir(env.backupDir)).filter((name) => name.endsWith('.partial'))).toEqual([]);
  });
});

describe('health detail', () => {
  const detail = async (target: TestApi) => {
    const response = await target.app.inject({
      method: 'GET',
      url: '/api/backup/health/detail',
      headers: adminHeaders(),
    });
    expect(response.statusCode).toBe(200);
    return (
      response.json() as {
        data: {
          destinations: { name: string; ok: boolean; required: boolean }[];
          reasons: { code: string; severity: string }[];
        };
      }
    ).data;
  };

  it('shows each bucket writable', async () => {
    const found = await detail(api);
    expect(found.destinations).toEqual([{ name: 'offsite', kind: 's3', required: true, ok: true }]);
    expect(found.reasons.map((reason) => reason.code)).not.toContain('DESTINATION_UNREACHABLE');
  });

  it('reports a required bucket it cannot reach as an error', async () => {
    // A port nothing listens on: the API's own S3 client cannot connect.
    const unreachable = await startApi({
      ...env.env,
      S3_OFFSITE_ENDPOINT: 'http://127.0.0.1:9',
      S3_OFFSITE_MAX_ATTEMPTS: '1',
    });
    try {
      const found = await detail(unreachable);
      expect(found.destinations).toMatchObject([{ name: 'offsite', ok: false }]);
      expect(found.reasons).toContainEqual(
        expect.objectContaining({ code: 'DESTINATION_UNREACHABLE', severity: 'error' }),
      );
    } finally {
      await unreachable.close();
    }
  });
});

describe('catalog rebuild', () => {
  it('npm run catalog:rebuild adds back what the bucket holds and the catalog lost', async () => {
    const made = await backup({ label: 'rebuilt by command' });
    await rm(path.join(env.backupDir, `backup-${made.id}.manifest.json`));
    const listed = async () =>
      (
        (
          await api.app.inject({ method: 'GET', url: '/api/backup', headers: adminHeaders() })
        ).json() as { data: BackupManifest[] }
      ).data.map((manifest) => manifest.id);
    expect(await listed()).not.toContain(made.id);

    // --dry-run: says what it would add, and the catalog stays as it is, file for file.
    const before = await catalogFiles(env.backupDir);
    const dryRun = await execFileAsync(
      process.execPath,
      ['--enable-source-maps', 'apps/worker/dist/cli/catalog.js', '--dry-run'],
      { cwd: root, env: { PATH: process.env.PATH, ...env.env }, encoding: 'utf8', timeout: 60_000 },
    );
    const report = JSON.parse(dryRun.stdout);
    expect(report).toMatchObject({ dryRun: true, wouldAdd: [made.id], unreachable: [] });
    expect(report.added).toBeUndefined();
    expect(await catalogFiles(env.backupDir)).toEqual(before);
    expect(await listed()).not.toContain(made.id);

    // Asynchronously: the S3 server it talks to runs in this process. Rejects on a non-zero exit.
    const run = await execFileAsync(
      process.execPath,
      ['--enable-source-maps', 'apps/worker/dist/cli/catalog.js'],
      { cwd: root, env: { PATH: process.env.PATH, ...env.env }, encoding: 'utf8', timeout: 60_000 },
    );
    expect(JSON.parse(run.stdout)).toMatchObject({
      destinations: ['local', 'offsite'],
      added: [made.id],
      unreachable: [],
    });
    expect(await listed()).toContain(made.id);
    // Its local artifact is still there, so the local copy stays listed too.
    const rebuilt = (
      (
        await api.app.inject({
          method: 'GET',
          url: `/api/backup/${made.id}`,
          headers: adminHeaders(),
        })
      ).json() as { data: BackupManifest }
    ).data;
    expect(rebuilt.copies.map((copy) => copy.destination)).toEqual(['local', 'offsite']);
  });

  it('brings back every backup from the bucket after the local catalog is lost', async () => {
    const made = await backup({ label: 'to be rebuilt' });
    await worker.stop();
    for (const name of await readdir(env.backupDir)) await rm(path.join(env.backupDir, name));
    worker = await startWorker(env.env);
    await vi.waitFor(
      async () => {
        const response = await api.app.inject({
          method: 'GET',
          url: `/api/backup/${made.id}`,
          headers: adminHeaders(),
        });
        expect(response.statusCode).toBe(200);
        const listed = (response.json() as { data: BackupManifest }).data;
        // The local copy is gone with the disk: only the bucket's is listed.
        expect(listed.copies.map((copy) => copy.destination)).toEqual(['offsite']);
      },
      { timeout: 15_000, interval: 100 },
    );
  });

  it('does not import a bucket manifest that this deployment did not sign', async () => {
    const changed = await backup({ label: 'changed in the bucket' });
    const unsigned = await backup({ label: 'unsigned in the bucket' });
    const keyOf = (id: string) => `prod/backup-${id}.manifest.json`;
    const client = s3TestClient(s3.endpoint);
    try {
      // Someone with write access to the bucket: one manifest edited (its HMAC kept), one
      // written from scratch without an HMAC. Both otherwise pass every other check.
      const edited = JSON.parse((await objectBytes(keyOf(changed.id))).toString('utf8'));
      expect(edited.hmac).toMatch(/^[0-9a-f]{64}$/);
      edited.tables = ['public.User'];
      const stripped = JSON.parse((await objectBytes(keyOf(unsigned.id))).toString('utf8'));
      delete stripped.hmac;
      for (const [id, body] of [
        [changed.id, edited],
        [unsigned.id, stripped],
      ] as const) {
        await client.send(
          new PutObjectCommand({ Bucket: BUCKET, Key: keyOf(id), Body: JSON.stringify(body) }),
        );
        await rm(path.join(env.backupDir, `backup-${id}.manifest.json`));
      }
    } finally {
      client.destroy();
    }
    const run = await execFileAsync(
      process.execPath,
      ['--enable-source-maps', 'apps/worker/dist/cli/catalog.js'],
      { cwd: root, env: { PATH: process.env.PATH, ...env.env }, encoding: 'utf8', timeout: 60_000 },
    );
    expect(JSON.parse(run.stdout)).toMatchObject({ added: [], unreachable: [] });
    for (const id of [changed.id, unsigned.id]) {
      const response = await api.app.inject({
        method: 'GET',
        url: `/api/backup/${id}`,
        headers: adminHeaders(),
      });
      expect(response.statusCode, id).toBe(404);
    }
  });
});
