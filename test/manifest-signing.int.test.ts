import { randomBytes } from 'node:crypto';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  artifactFilename,
  type BackupManifest,
  type JobResult,
  manifestFilename,
  newBackupId,
} from '@pgkeep/core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { adminHeaders, json, postJob, startApi, type TestApi, waitForJob } from './support/api.js';
import { seedPanelSchema } from './support/panel-schema.js';
import { createTestEnv, type TestEnv } from './support/test-env.js';
import { startWorker, type WorkerProcess } from './support/worker-process.js';

const CATALOG_KEY = randomBytes(32).toString('base64');

let env: TestEnv;
let api: TestApi | undefined;
let worker: WorkerProcess | undefined;

/** API and worker (re)started with `overrides` over the test's environment. */
async function startBoth(overrides: Record<string, string> = {}): Promise<TestApi> {
  await worker?.stop();
  await api?.close();
  const variables = { ...env.env, ...overrides };
  const [started, startedWorker] = await Promise.all([startApi(variables), startWorker(variables)]);
  await vi.waitFor(() => expect(started.services.redis.status).toBe('ready'), {
    timeout: 10_000,
    interval: 20,
  });
  api = started;
  worker = startedWorker;
  return started;
}

beforeAll(async () => {
  env = await createTestEnv('signing');
  await seedPanelSchema(env.databaseUrl, 200);
});

afterAll(async () => {
  await worker?.stop();
  await api?.close();
  await env?.cleanup();
});

const manifestFile = (id: string) => path.join(env.backupDir, manifestFilename(id));

describe('turning a catalog key on', () => {
  it('keeps the backups made before it, and refuses any unsigned manifest that appears later', async () => {
    const unkeyed = await startBoth();
    const job = await waitForJob(unkeyed, await postJob(unkeyed, '/api/backup', {}));
    const before = job.result as unknown as BackupManifest;
    expect(JSON.parse(await readFile(manifestFile(before.id), 'utf8'))).not.toHaveProperty('hmac');

    const keyed = await startBoth({ CATALOG_KEY });
    // The worker's start signed the catalog: the backup is still listed and can be verified.
    expect(JSON.parse(await readFile(manifestFile(before.id), 'utf8')).hmac).toMatch(
      /^[0-9a-f]{64}$/,
    );
    const listed = await keyed.app.inject({
      method: 'GET',
      url: '/api/backup',
      headers: adminHeaders(),
    });
    expect(json<{ data: BackupManifest[] }>(listed).data.map((m) => m.id)).toEqual([before.id]);
    const verified = await waitForJob(
      keyed,
      await postJob(keyed, `/api/backup/${before.id}/verify`, {}),
    );
    expect((verified.result as JobResult<'verify'>).ok).toBe(true);

    // A manifest written without the key after that (an older process, a copy by hand).
    const id = newBackupId();
    const filename = artifactFilename(id, before.format, before.compression);
    await copyFile(path.join(env.backupDir, before.filename), path.join(env.backupDir, filename));
    const copy = { ...before, id, filename, copies: [{ ...before.copies[0], location: filename }] };
    await writeFile(manifestFile(id), JSON.stringify(copy));

    // Refused now, and still after another start: only the first start with a key signs.
    const refused = async (current: TestApi) => {
      const one = await current.app.inject({
        method: 'GET',
        url: `/api/backup/${id}`,
        headers: adminHeaders(),
      });
      return json(one).error?.code;
    };
    expect(await refused(keyed)).toBe('MANIFEST_INVALID');
    expect(await refused(await startBoth({ CATALOG_KEY }))).toBe('MANIFEST_INVALID');
    expect(JSON.parse(await readFile(manifestFile(id), 'utf8'))).not.toHaveProperty('hmac');
  });
});
