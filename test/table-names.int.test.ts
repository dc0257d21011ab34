import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type BackupManifest, type JobResult, manifestFilename } from '@pgkeep/core';
import { enqueue } from '@pgkeep/queue';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adminHeaders,
  json,
  type PolledJob,
  postJob,
  startConnectedApi,
  type TestApi,
  waitForJob,
} from './support/api.js';
import { databaseSnapshot } from './support/panel-schema.js';
import { createTestEnv, dropDatabase, type TestEnv, withClient } from './support/test-env.js';
import { startWorker, type WorkerProcess } from './support/worker-process.js';

/**
 * Table names that PostgreSQL allows and SQL built by pasting text would choke on: the dollar
 * quote pgkeep's own statements once used, mixed case, a quote and a semicolon. Encryption is
 * on, so every manifest carries an HMAC under the catalog key derived from the encryption key.
 */
const DOLLAR = 'f$pgkeep$t';
const MIXED = 'Order$pgkeep$Lines';
const QUOTED = 'Ord"er;s DROP';

let env: TestEnv;
let api: TestApi;
let worker: WorkerProcess;
const extraDatabases: string[] = [];

beforeAll(async () => {
  env = await createTestEnv('names', {
    BACKUP_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
  });
  await withClient(env.databaseUrl, (client) =>
    client.query(`
      CREATE TABLE "${DOLLAR}" (id int PRIMARY KEY, body text NOT NULL);
      INSERT INTO "${DOLLAR}" SELECT g, 'row $pgkeep$ ' || g FROM generate_series(1, 120) g;
      CREATE TABLE "${MIXED}" (id int PRIMARY KEY, qty int NOT NULL);
      INSERT INTO "${MIXED}" SELECT g, g * 3 FROM generate_series(1, 80) g;
      CREATE TABLE "${QUOTED.replaceAll('"', '""')}" (id int PRIMARY KEY, note text);
      INSERT INTO "${QUOTED.replaceAll('"', '""')}" SELECT g, 'n;' || g FROM generate_series(1, 40) g;
      CREATE TABLE victim (id int PRIMARY KEY, keep text NOT NULL);
      INSERT INTO victim SELECT g, 'must survive' FROM generate_series(1, 30) g;
    `),
  );
  [api, worker] = await Promise.all([startConnectedApi(env.env), startWorker(env.env)]);
});

afterAll(async () => {
  await worker?.stop();
  await api?.close();
  for (const name of extraDatabases) await dropDatabase(env.serverUrl, name);
  await env?.cleanup();
});

const snapshot = () => databaseSnapshot(env.databaseUrl);

async function backup(body: Record<string, unknown>): Promise<BackupManifest> {
  const job = await waitForJob(api, await postJob(api, '/api/backup', body));
  expect(job.error).toBeNull();
  return job.result as unknown as BackupManifest;
}

async function restore(id: string): Promise<PolledJob> {
  const job = await waitForJob(
    api,
    await postJob(api, `/api/backup/${id}/restore`, { confirm: env.name }),
  );
  const previous = (job.result as JobResult<'restore'> | null)?.previousDatabase;
  if (previous) extraDatabases.push(previous);
  return job;
}

async function changeRows(): Promise<void> {
  await withClient(env.databaseUrl, (client) =>
    client.query(`
      DELETE FROM "${DOLLAR}" WHERE id % 3 = 0;
      UPDATE "${MIXED}" SET qty = -1 WHERE id <= 10;
      INSERT INTO "${MIXED}" VALUES (1000, 1) ON CONFLICT (id) DO NOTHING;
      DELETE FROM "${QUOTED.replaceAll('"', '""')}" WHERE id > 20;
    `),
  );
}

describe('tables with names that are awkward in SQL', () => {
  it.each([
    { format: 'custom', compression: 'zstd' },
    { format: 'plain', compression: 'gzip' },
  ])(
    'a table backup ($format) of tables named with a dollar quote and mixed case restores them row for row',
    async ({ format, compression }) => {
      const manifest = await backup({ tables: [DOLLAR, MIXED], format, compression });
      expect(manifest.tables).toEqual([`public.${DOLLAR}`, `public.${MIXED}`]);
      const atBackup = await snapshot();
      await changeRows();
      const changed = await snapshot();

      const job = await restore(manifest.id);
      expect(job.error).toBeNull();
      expect(job.result).toMatchObject({ mode: 'tables', previousDatabase: null });
      const after = await snapshot();
      expect(after[`public.${DOLLAR}`]).toEqual(atBackup[`public.${DOLLAR}`]);
      expect(after[`public.${MIXED}`]).toEqual(atBackup[`public.${MIXED}`]);
      // Only the backup's tables were put back.
      expect(after[`public.${QUOTED}`]).toEqual(changed[`public.${QUOTED}`]);
      expect(after['public.victim']).toEqual(changed['public.victim']);
    },
  );

  it('a full backup holding a table named with a quote and a semicolon restores and verifies row for row', async () => {
    const atBackup = await snapshot();
    const manifest = await backup({});
    expect(manifest.rowCounts[`public.${QUOTED}`]).toBe(atBackup[`public.${QUOTED}`]?.length);
    await changeRows();

    const job = await restore(manifest.id);
    expect(job.error).toBeNull();
    expect(job.result).toMatchObject({ mode: 'database' });
    expect(await snapshot()).toEqual(atBackup);

    const verified = await waitForJob(
      api,
      await postJob(api, `/api/backup/${manifest.id}/verify`, { restore: true }),
    );
    expect(verified.result).toMatchObject({ ok: true });
  });
});

describe('a manifest changed behind pgkeep', () => {
  it('is refused with MANIFEST_INVALID by the API and the worker, and nothing is dropped', async () => {
    const manifest = await backup({ tables: [DOLLAR] });
    const file = path.join(env.backupDir, manifestFilename(manifest.id));
    // What someone with write access to the backups would do: make a table restore drop
    // another table too. The JSON is otherwise valid; only its HMAC no longer fits.
    const tampered = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    tampered.tables = [`public.${DOLLAR}`, 'public.victim'];
    await writeFile(file, `${JSON.stringify(tampered, null, 2)}\n`);
    const before = await snapshot();

    const get = (url: string) => api.app.inject({ method: 'GET', url, headers: adminHeaders() });
    const one = await get(`/api/backup/${manifest.id}`);
    expect(one.statusCode).toBe(500);
    expect(json(one).error.code).toBe('MANIFEST_INVALID');
    const listed = json<{ data: BackupManifest[] }>(await get('/api/backup')).data;
    expect(listed.map((listedManifest) => listedManifest.id)).not.toContain(manifest.id);
    const download = await get(`/api/backup/${manifest.id}/download`);
    expect(json(download).error.code).toBe('MANIFEST_INVALID');

    for (const [action, payload] of [
      ['restore', { confirm: env.name }],
      ['verify', {}],
    ] as const) {
      const response = await api.app.inject({
        method: 'POST',
        url: `/api/backup/${manifest.id}/${action}`,
        headers: adminHeaders(),
        payload,
      });
      expect(json(response).error.code, action).toBe('MANIFEST_INVALID');
    }

    // Straight onto the queue, past the API: the worker reads the manifest itself and refuses.
    const jobId = await enqueue(api.services.queues, api.config, 'restore', {
      backupId: manifest.id,
      target: env.name,
      requestedBy: 'admin@example.com',
      requestedAt: new Date().toISOString(),
    });
    const job = await waitForJob(api, jobId);
    expect(job.state).toBe('failed');
    expect(job.error?.code).toBe('MANIFEST_INVALID');
    expect(job.attemptsMade).toBe(1);
    expect(await snapshot()).toEqual(before);
  });
});
