import { readdir } from 'node:fs/promises';
import { enqueue } from '@pgkeep/queue';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminHeaders, json, postJob, startApi, type TestApi, waitForJob } from './support/api.js';
import { seedPanelSchema } from './support/panel-schema.js';
import { createTestEnv, type TestEnv } from './support/test-env.js';
import { startWorker, type WorkerProcess } from './support/worker-process.js';

interface Manifest {
  id: string;
  filename: string;
  size: number;
  createdAt: string;
}

let env: TestEnv;
let api: TestApi;
let worker: WorkerProcess;

async function list(): Promise<{ data: Manifest[]; count: number }> {
  const response = await api.app.inject({
    method: 'GET',
    url: '/api/backup',
    headers: adminHeaders(),
  });
  expect(response.statusCode).toBe(200);
  return response.json() as { data: Manifest[]; count: number };
}

async function backup(label: string): Promise<Manifest> {
  const job = await waitForJob(api, await postJob(api, '/api/backup', { label }));
  expect(job.state, JSON.stringify(job.error)).toBe('completed');
  return job.result as unknown as Manifest;
}

beforeAll(async () => {
  env = await createTestEnv('maint');
  await seedPanelSchema(env.databaseUrl, 100);
  [api, worker] = await Promise.all([startApi(env.env), startWorker(env.env)]);
});

afterAll(async () => {
  await worker?.stop();
  await api?.close();
  await env?.cleanup();
});

describe('list, stats, delete and clean', () => {
  let made: Manifest[] = [];

  it('lists backups newest first with a count, and stats add them up', async () => {
    expect(await list()).toMatchObject({ success: true, data: [], count: 0 });
    made = [];
    for (const label of ['one', 'two', 'three', 'four']) made.push(await backup(label));
    const listed = await list();
    expect(listed.count).toBe(4);
    expect(listed.data.map((manifest) => manifest.id)).toEqual(made.map((m) => m.id).reverse());

    const stats = await api.app.inject({
      method: 'GET',
      url: '/api/backup/stats',
      headers: adminHeaders(),
    });
    expect(stats.statusCode).toBe(200);
    expect(json(stats).data).toEqual({
      totalBackups: 4,
      totalSize: made.reduce((sum, manifest) => sum + manifest.size, 0),
      oldestBackup: {
        id: made[0]?.id,
        filename: made[0]?.filename,
        createdAt: made[0]?.createdAt,
        size: made[0]?.size,
      },
      newestBackup: {
        id: made[3]?.id,
        filename: made[3]?.filename,
        createdAt: made[3]?.createdAt,
        size: made[3]?.size,
      },
      encryptedBackups: 0,
      // One destination (local), holding a copy of each.
      byDestination: {
        local: { backups: 4, size: made.reduce((sum, manifest) => sum + manifest.size, 0) },
      },
    });

    const one = await api.app.inject({
      method: 'GET',
      url: `/api/backup/${made[1]?.id}`,
      headers: adminHeaders(),
    });
    expect(one.statusCode).toBe(200);
    expect(json(one).data).toEqual(made[1]);
  });

  it('deletes one backup: artifact and manifest gone, the others untouched', async () => {
    const victim = made[1] as Manifest;
    const job = await waitForJob(api, await postJob(api, `DELETE /api/backup/${victim.id}`));
    expect(job.state).toBe('completed');
    expect(job.result).toMatchObject({ deletedCount: 1, deleted: [victim.id] });

    const files = await readdir(env.backupDir);
    expect(files.some((file) => file.includes(victim.id))).toBe(false);
    for (const kept of [made[0], made[2], made[3]] as Manifest[]) {
      expect(files).toContain(kept.filename);
    }
    expect((await list()).count).toBe(3);
    const gone = await api.app.inject({
      method: 'GET',
      url: `/api/backup/${victim.id}`,
      headers: adminHeaders(),
    });
    expect(gone.statusCode).toBe(404);
    expect(json(gone).error.code).toBe('BACKUP_NOT_FOUND');
    const again = await api.app.inject({
      method: 'DELETE',
      url: `/api/backup/${victim.id}`,
      headers: adminHeaders(),
    });
    expect(again.statusCode).toBe(404);
  });

  it('cleans up to the newest N and says what it deleted', async () => {
    const job = await waitForJob(api, await postJob(api, '/api/backup/clean?keepLast=2'));
    expect(job.state).toBe('completed');
    expect(job.result).toMatchObject({
      deletedCount: 1,
      deleted: [made[0]?.id],
      keptLast: 2,
      kept: [made[3]?.id, made[2]?.id],
    });
    const listed = await list();
    expect(listed.data.map((manifest) => manifest.id)).toEqual([made[3]?.id, made[2]?.id]);
    const files = (await readdir(env.backupDir)).sort();
    expect(files).toEqual(
      [made[2], made[3]].flatMap((m) => [m?.filename, `backup-${m?.id}.manifest.json`]).sort(),
    );

    const noop = await waitForJob(api, await postJob(api, '/api/backup/clean?keepLast=5'));
    expect(noop.result).toMatchObject({ deletedCount: 0, deleted: [], keptLast: 5 });
    expect((await list()).count).toBe(2);
  });

  it('a delete whose backup vanished before it ran fails once, clearly', async () => {
    const doomed = await backup('doomed');
    // Two deletes of the same backup, queued directly (the API would refuse the second once
    // the first has run): whichever runs second finds nothing to delete.
    const payload = {
      backupId: doomed.id,
      requestedBy: 'admin@example.com',
      requestedAt: new Date().toISOString(),
    };
    const first = await enqueue(api.services.queues, api.config, 'delete', payload);
    const second = await enqueue(api.services.queues, api.config, 'delete', payload);
    const results = [await waitForJob(api, first), await waitForJob(api, second)];
    expect(results.map((job) => job.state).sort()).toEqual(['completed', 'failed']);
    const failed = results.find((job) => job.state === 'failed');
    expect(failed?.error).toEqual({
      code: 'BACKUP_NOT_FOUND',
      message: `backup ${doomed.id} not found`,
    });
    expect(failed?.attemptsMade).toBe(1);
  });

  it('skips a manifest on disk that is not valid instead of listing or trusting it', async () => {
    const { writeFile } = await import('node:fs/promises');
    const path = await import('node:path');
    const before = await list();
    const forged = {
      ...before.data[0],
      id: '2020-01-01T00-00-00-000Z',
      filename: '../../etc/passwd',
    };
    await writeFile(
      path.join(env.backupDir, 'backup-2020-01-01T00-00-00-000Z.manifest.json'),
      JSON.stringify(forged),
    );
    await writeFile(
      path.join(env.backupDir, 'backup-2020-01-02T00-00-00-000Z.manifest.json'),
      '{not json',
    );
    const after = await list();
    expect(after.data).toEqual(before.data);
    const forgedGet = await api.app.inject({
      method: 'GET',
      url: '/api/backup/2020-01-01T00-00-00-000Z',
      headers: adminHeaders(),
    });
    expect(forgedGet.statusCode).toBe(500);
    expect(json(forgedGet).error).toEqual({ code: 'MANIFEST_INVALID', message: 'internal error' });
  });
});
