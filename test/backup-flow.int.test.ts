import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { enqueue } from '@pgkeep/queue';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminHeaders, json, postJob, startApi, type TestApi, waitForJob } from './support/api.js';
import { existingTables, panelTables, seedPanelSchema, tableRows } from './support/panel-schema.js';
import { restoreByHand } from './support/restore.js';
import {
  createDatabase,
  createTestEnv,
  dropDatabase,
  type TestEnv,
  urlWithDatabase,
  withClient,
} from './support/test-env.js';
import { startWorker, type WorkerProcess } from './support/worker-process.js';

let env: TestEnv;
let api: TestApi;
let worker: WorkerProcess;
const scratch: string[] = [];

async function scratchDatabase(): Promise<string> {
  const name = `${env.name}_r${scratch.length}`;
  await createDatabase(env.serverUrl, name);
  scratch.push(name);
  return urlWithDatabase(env.serverUrl, name);
}

beforeAll(async () => {
  env = await createTestEnv('flow');
  await seedPanelSchema(env.databaseUrl);
  [api, worker] = await Promise.all([startApi(env.env), startWorker(env.env)]);
});

afterAll(async () => {
  await worker?.stop();
  await api?.close();
  for (const name of scratch) await dropDatabase(env.serverUrl, name);
  await env?.cleanup();
});

describe('backups through the API and the worker', () => {
  it.each([
    { format: 'custom', compression: 'zstd' },
    { format: 'custom', compression: 'none' },
    { format: 'plain', compression: 'gzip' },
    { format: 'plain', compression: 'zstd' },
  ] as const)(
    'a full $format/$compression backup restores every table row for row',
    async (options) => {
      const jobId = await postJob(api, '/api/backup', { ...options, label: 'before release' });
      const job = await waitForJob(api, jobId);
      expect(job.error).toBeNull();
      expect(job.state).toBe('completed');
      expect(job.requestedBy).toBe('admin@example.com');
      const manifest = job.result as Record<string, unknown> & {
        filename: string;
        rowCounts: Record<string, number>;
      };
      expect(manifest).toMatchObject({
        type: 'manual',
        status: 'completed',
        format: options.format,
        compression: options.compression,
        tables: null,
        label: 'before release',
        requestedBy: 'admin@example.com',
        database: env.name,
        jobId,
      });
      expect(manifest.rowCounts).toEqual({
        'public.Payment': 500,
        'public.User': 200,
        'public.WhatsappMessage': 2000,
        'public.user_audit': 50,
      });
      const file = path.join(env.backupDir, manifest.filename);
      expect((await stat(file)).size).toBe(manifest.size);

      const target = await scratchDatabase();
      await restoreByHand(file, target);
      expect(await existingTables(target)).toEqual(await existingTables(env.databaseUrl));
      for (const table of panelTables) {
        expect(await tableRows(target, table), table).toEqual(
          await tableRows(env.databaseUrl, table),
        );
      }
    },
  );

  it('a table backup holds exactly the named tables, mixed case included', async () => {
    const jobId = await postJob(api, '/api/backup', {
      tables: ['User', 'WhatsappMessage'],
      format: 'plain',
    });
    const job = await waitForJob(api, jobId);
    expect(job.state).toBe('completed');
    const manifest = job.result as {
      filename: string;
      tables: string[];
      rowCounts: Record<string, number>;
    };
    expect(manifest.tables).toEqual(['public.User', 'public.WhatsappMessage']);
    expect(manifest.rowCounts).toEqual({ 'public.User': 200, 'public.WhatsappMessage': 2000 });

    // A table dump carries the tables, not the enum type they use: the target provides it.
    const withTypes = await scratchDatabase();
    await withClient(withTypes, (client) =>
      client.query(`CREATE TYPE "Role" AS ENUM ('SUPER_ADMIN', 'ADMIN', 'USER')`),
    );
    await restoreByHand(path.join(env.backupDir, manifest.filename), withTypes);
    expect(await existingTables(withTypes)).toEqual(['public.User', 'public.WhatsappMessage']);
    for (const table of ['public.User', 'public.WhatsappMessage']) {
      expect(await tableRows(withTypes, table)).toEqual(await tableRows(env.databaseUrl, table));
    }
  });

  it('refuses an unknown table up front and queues nothing', async () => {
    const before = await api.services.queues.backups.getJobCounts();
    const response = await api.app.inject({
      method: 'POST',
      url: '/api/backup',
      headers: adminHeaders(),
      payload: { tables: ['User', 'user'] },
    });
    expect(response.statusCode).toBe(400);
    expect(json(response).error.code).toBe('TABLE_NOT_FOUND');
    expect(json(response).error.message).toContain('user');
    expect(await api.services.queues.backups.getJobCounts()).toEqual(before);
  });

  it('fails the job, without retrying, when the worker finds no such table', async () => {
    // Straight onto the queue, past the API's up-front check, as if the table had been dropped
    // between the request and the run: pg_dump --strict-names must refuse, not dump nothing.
    const jobId = await enqueue(api.services.queues, api.config, 'backup', {
      tables: ['Gone'],
      format: 'custom',
      compression: 'zstd',
      label: null,
      type: 'manual',
      requestedBy: 'admin@example.com',
      requestedAt: new Date().toISOString(),
    });
    const job = await waitForJob(api, jobId);
    expect(job.state).toBe('failed');
    // A job's error carries the error's details, as the API's 400 for the same table does.
    expect(job.error).toEqual({
      code: 'TABLE_NOT_FOUND',
      message: 'table not found: Gone',
      details: { missing: ['Gone'] },
    });
    expect(job.attemptsMade).toBe(1);
    const files = await readdir(env.backupDir);
    expect(files.filter((file) => file.includes('partial'))).toEqual([]);
  });

  it('takes a POST with no body at all as a full backup, and reports progress and timestamps', async () => {
    const response = await api.app.inject({
      method: 'POST',
      url: '/api/backup',
      headers: adminHeaders(),
    });
    expect(response.statusCode, response.body).toBe(202);
    const jobId = (response.json() as { data: { jobId: string } }).data.jobId;
    const job = await waitForJob(api, jobId);
    expect((job.result as { tables: unknown }).tables).toBeNull();
    expect(job.progress).toMatchObject({ phase: 'completed', percent: 100 });
    expect(job.progress?.bytesWritten).toBe((job.result as { size: number }).size);
    expect(Date.parse(job.startedAt ?? '')).toBeGreaterThanOrEqual(Date.parse(job.createdAt));
    expect(Date.parse(job.finishedAt ?? '')).toBeGreaterThanOrEqual(
      Date.parse(job.startedAt ?? ''),
    );
  });
});
