import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { manifestFilename } from '@pgkeep/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminHeaders, json, postJob, startApi, type TestApi, waitForJob } from './support/api.js';
import { createTestEnv, type TestEnv, withClient } from './support/test-env.js';
import { startWorker, type WorkerProcess } from './support/worker-process.js';

/**
 * A backup directory as the release before targets left it: manifests at the top of BACKUP_DIR
 * with no `target`, `server` or `excludedTables`. After the upgrade it belongs to `default`,
 * whether the deployment keeps DATABASE_URL alone or moves to a targets file with a `default`.
 */
let env: TestEnv;
let dir: string;
let backupId: string;

async function rowCount(): Promise<number> {
  return withClient(env.databaseUrl, async (client) => {
    const { rows } = await client.query<{ n: string }>('SELECT count(*) AS n FROM item');
    return Number(rows[0]?.n);
  });
}

async function withStack<T>(
  extra: Record<string, string>,
  work: (api: TestApi, worker: WorkerProcess) => Promise<T>,
): Promise<T> {
  const processEnv = { ...env.env, ...extra };
  const [api, worker] = await Promise.all([startApi(processEnv), startWorker(processEnv)]);
  try {
    return await work(api, worker);
  } finally {
    await worker.stop();
    await api.close();
  }
}

beforeAll(async () => {
  env = await createTestEnv('upgrade');
  dir = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-upgrade-'));
  await withClient(env.databaseUrl, async (client) => {
    await client.query('CREATE TABLE item (id int PRIMARY KEY)');
    await client.query('INSERT INTO item SELECT generate_series(1, 40)');
  });
  await withStack({}, async (api) => {
    const job = await waitForJob(api, await postJob(api, '/api/backup'));
    expect(job.error).toBeNull();
    backupId = String(job.result?.id);
  });
  // What the earlier release wrote: the same manifest without the fields targets added.
  const file = path.join(env.backupDir, manifestFilename(backupId));
  const manifest = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  expect(manifest.target).toBe('default');
  delete manifest.target;
  delete manifest.server;
  delete manifest.excludedTables;
  await writeFile(file, JSON.stringify(manifest, null, 2));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await env?.cleanup();
});

describe('a backup directory from before targets', () => {
  it('lists and restores under DATABASE_URL alone', async () => {
    await withStack({}, async (api) => {
      const list = await api.app.inject({
        method: 'GET',
        url: '/api/backup',
        headers: adminHeaders(),
      });
      expect(json<{ data: { id: string }[] }>(list).data.map((backup) => backup.id)).toEqual([
        backupId,
      ]);
      const viaTarget = await api.app.inject({
        method: 'GET',
        url: `/api/targets/default/backups/${backupId}`,
        headers: adminHeaders(),
      });
      expect(viaTarget.statusCode, viaTarget.body).toBe(200);
      await withClient(env.databaseUrl, (client) => client.query('DELETE FROM item'));
      const restore = await waitForJob(
        api,
        await postJob(api, `/api/backup/${backupId}/restore`, { confirm: env.name }),
      );
      expect(restore.error).toBeNull();
      expect(await rowCount()).toBe(40);
    });
  });

  it('stays the backups of `default` in a targets file that names a default target', async () => {
    const file = path.join(dir, 'targets.yaml');
    const port = new URL(env.serverUrl).port || 5432;
    await writeFile(
      file,
      `servers:
  main:
    url: postgres://postgres@127.0.0.1:${port}/postgres
targets:
  default:
    server: main
    database: ${env.name}
    schedules: { backup: "off", cleanup: "off", verify: "off" }
`,
    );
    await withStack({ TARGETS_FILE: file }, async (api) => {
      const list = await api.app.inject({
        method: 'GET',
        url: '/api/backup',
        headers: adminHeaders(),
      });
      expect(json<{ data: { id: string }[] }>(list).data.map((backup) => backup.id)).toEqual([
        backupId,
      ]);
      await withClient(env.databaseUrl, (client) => client.query('DELETE FROM item WHERE id > 5'));
      const restore = await waitForJob(
        api,
        await postJob(api, `/api/backup/${backupId}/restore`, { confirm: env.name }),
      );
      expect(restore.error).toBeNull();
      expect(await rowCount()).toBe(40);
    });
  });
});
