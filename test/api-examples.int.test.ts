import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { baseBackupManifestFilename, baseBackupManifestSchema, walEntrySchema } from '@pgkeep/core';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiExample, ApiExamples } from '../apps/api/src/api-examples.js';
import { adminHeaders, startConnectedApi, type TestApi, token, waitForJob } from './support/api.js';
import { normaliseExamples, shapeDifferences } from './support/api-examples.js';
import { createTestEnv, type TestEnv, withClient } from './support/test-env.js';
import { startWorker, type WorkerProcess } from './support/worker-process.js';

/**
 * The examples of the OpenAPI document and docs/api.md are answers of the real API (and a real
 * worker, where a job must finish), recorded here. `npm run docs:examples` records them into
 * docs/api-examples.json; every other run records them again and fails when an answer's shape
 * (its keys, the types of their values) or the set of examples differs from the file, so the
 * file cannot drift from what the API answers. (test/openapi.int.test.ts checks each recorded
 * example against its route's current schemas.)
 */

const RECORD = process.env.RECORD_API_EXAMPLES === '1';
const examplesFile = fileURLToPath(new URL('../docs/api-examples.json', import.meta.url));

/** The response headers worth showing: the download's, and where a redirect or page goes. */
const SHOWN_HEADERS = [
  'content-type',
  'content-length',
  'accept-ranges',
  'content-range',
  'content-disposition',
  'etag',
  'x-checksum-sha256',
  'repr-digest',
  'x-backup-copy',
  'retry-after',
];

let env: TestEnv;
let api: TestApi;
let worker: WorkerProcess | undefined;
const operations: Record<string, ApiExample[]> = {};

interface Call {
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE';
  url: string;
  body?: unknown;
  headers?: Record<string, string>;
  /** Send an admin's token (default) or nothing. */
  auth?: boolean;
  /** What the example shows as the body, when the one sent holds a secret. */
  shownBody?: unknown;
}

/** One request through the real app, recorded as an example of `operationId`. */
async function call(
  operationId: string,
  title: string,
  { method = 'GET', url, body, headers = {}, auth = true, shownBody = body }: Call,
  app = api,
): Promise<LightMyRequestResponse> {
  const response = await app.app.inject({
    method,
    url,
    headers: { ...(auth ? adminHeaders() : {}), ...headers },
    ...(body === undefined ? {} : { payload: body as object }),
  });
  const contentType = String(response.headers['content-type'] ?? '');
  const shown = Object.fromEntries(
    SHOWN_HEADERS.filter((name) => response.headers[name] !== undefined).map((name) => [
      name,
      String(response.headers[name]),
    ]),
  );
  const responseBody = contentType.startsWith('application/json')
    ? response.json()
    : contentType.startsWith('application/octet-stream')
      ? null
      : shortened(response.body);
  const example: ApiExample = {
    title,
    request: {
      method,
      url,
      ...(Object.keys(headers).length > 0 ? { headers } : {}),
      ...(shownBody === undefined ? {} : { body: shownBody }),
    },
    response: {
      status: response.statusCode,
      // JSON answers show only the headers that say more than their body (a 416's range).
      ...(contentType.startsWith('application/json')
        ? pick(shown, ['content-range', 'retry-after'])
        : { headers: shown }),
      body: responseBody,
    },
  };
  if (
    example.response.headers &&
    !contentType.startsWith('application/octet-stream') &&
    !contentType.startsWith('application/json')
  ) {
    // Text and pages: their type is what matters, not their length.
    example.response.headers = { 'content-type': contentType };
  }
  operations[operationId] = [...(operations[operationId] ?? []), example];
  return response;
}

const pick = (headers: Record<string, string>, names: string[]) => {
  const picked = Object.fromEntries(
    Object.entries(headers).filter(([name]) => names.includes(name)),
  );
  return Object.keys(picked).length > 0 ? { headers: picked } : {};
};

/** A long text answer (a scrape) shown by its first lines. */
const SHOWN_LINES = 24;
const shortened = (text: string) => {
  const lines = text.split('\n');
  return lines.length <= SHOWN_LINES ? text : `${lines.slice(0, SHOWN_LINES).join('\n')}\n…\n`;
};

const jobIdOf = (response: LightMyRequestResponse) => {
  expect(response.statusCode, response.body).toBe(202);
  return (response.json() as { data: { jobId: string } }).data.jobId;
};

/** Waits for the job, then records its final poll as an example of getJob. */
async function finished(jobId: string, title?: string) {
  const job = await waitForJob(api, jobId);
  expect(job.state, JSON.stringify(job.error)).toBe('completed');
  if (title) await call('getJob', title, { url: `/api/jobs/${jobId}` });
  return job;
}

beforeAll(async () => {
  env = await createTestEnv('examples');
  await withClient(env.databaseUrl, async (client) => {
    await client.query(`
      CREATE TABLE "Customer" (id serial PRIMARY KEY, name text NOT NULL);
      CREATE TABLE "Order" (id serial PRIMARY KEY, customer_id int REFERENCES "Customer", total numeric(10,2));
      INSERT INTO "Customer" (name) SELECT 'customer ' || n FROM generate_series(1, 20) n;
      INSERT INTO "Order" (customer_id, total) SELECT 1 + n % 20, n * 1.5 FROM generate_series(1, 100) n;
    `);
  });
  [api, worker] = await Promise.all([startConnectedApi(env.env), startWorker(env.env)]);
});

afterAll(async () => {
  await worker?.stop();
  await api?.close();
  await env?.cleanup();
});

describe('examples of every route, from the real API', () => {
  it('records the panel’s routes, with a worker running the jobs', async () => {
    const db = env.name;
    // The public probe reads the workers' heartbeats: wait until the worker's is there.
    await expect
      .poll(async () => (await api.app.inject({ url: '/api/backup/health' })).statusCode, {
        timeout: 20_000,
        interval: 100,
      })
      .toBe(200);
    await call('getHealth', 'Every dependency passes', { url: '/api/backup/health', auth: false });

    const backup = jobIdOf(
      await call('createBackup', 'A full backup, labelled', {
        method: 'POST',
        url: '/api/backup',
        body: { format: 'custom', compression: 'zstd', label: 'before release' },
      }),
    );
    const manifest = (await finished(backup, 'A backup that completed')).result as {
      id: string;
      size: number;
    };
    await call('getHealthDetail', 'In detail', { url: '/api/backup/health/detail' });
    await call('createBackup', 'A table that does not exist', {
      method: 'POST',
      url: '/api/backup',
      body: { tables: ['Customer', 'Invoice'] },
    });
    await call('listBackups', 'Every backup, newest first', { url: '/api/backup' });
    await call('listBackups', 'Without a token', { url: '/api/backup', auth: false });
    await call('getBackupStats', 'Totals', { url: '/api/backup/stats' });
    await call('getBackup', 'One manifest', { url: `/api/backup/${manifest.id}` });
    await call('getBackup', 'No such backup', { url: '/api/backup/2020-01-01T00-00-00-000Z' });
    await call('getBackup', 'Not a backup id', { url: '/api/backup/latest.sql' });

    const download = `/api/backup/${manifest.id}/download`;
    await call('downloadBackup', 'The whole artifact', { url: download });
    await call('downloadBackup', 'The first 100 bytes', {
      url: download,
      headers: { range: 'bytes=0-99' },
    });
    await call('downloadBackup', 'A range outside the artifact', {
      url: download,
      headers: { range: `bytes=${manifest.size + 1000}-` },
    });

    const verify = jobIdOf(
      await call('verifyBackup', 'Checksum and full read', {
        method: 'POST',
        url: `/api/backup/${manifest.id}/verify`,
        body: { restore: false },
      }),
    );
    await finished(verify, 'A verify that passed');

    await call('restoreBackup', 'Without the confirmation', {
      method: 'POST',
      url: `/api/backup/${manifest.id}/restore`,
      body: {},
    });
    const restore = jobIdOf(
      await call('restoreBackup', 'Into its database, confirmed', {
        method: 'POST',
        url: `/api/backup/${manifest.id}/restore`,
        body: { confirm: db },
      }),
    );
    await finished(restore, 'A restore that completed');

    await call('getJob', 'No such job', {
      url: '/api/jobs/backup-5f0c2a4e-1b7d-4c3a-9e8f-2d6b4a1c0e9f',
    });
    await call('getJob', 'Not a job id', { url: '/api/jobs/nightly' });
    await call('cancelJob', 'A job that has finished', {
      method: 'POST',
      url: `/api/jobs/${restore}/cancel`,
    });

    // The same routes per target, here the target `default`.
    const base = '/api/targets/default/backups';
    const second = jobIdOf(
      await call('createTargetBackup', 'A plain SQL backup of one target', {
        method: 'POST',
        url: base,
        body: { format: 'plain', compression: 'gzip' },
      }),
    );
    const secondId = ((await finished(second)).result as { id: string }).id;
    await call('listTargetBackups', 'The target’s backups', { url: base });
    await call('getTargetBackupStats', 'The target’s totals', { url: `${base}/stats` });
    await call('getTargetBackup', 'One of the target’s manifests', { url: `${base}/${secondId}` });
    await call('downloadTargetBackup', 'The whole artifact', {
      url: `${base}/${secondId}/download`,
    });
    await finished(
      jobIdOf(
        await call('verifyTargetBackup', 'With a scratch restore', {
          method: 'POST',
          url: `${base}/${secondId}/verify`,
          body: { restore: true },
        }),
      ),
    );
    await finished(
      jobIdOf(
        await call('restoreTargetBackup', 'Into a new database beside it', {
          method: 'POST',
          url: `${base}/${secondId}/restore`,
          body: { target: `${db}_copy`, confirm: `${db}_copy` },
        }),
      ),
    );
    await finished(
      jobIdOf(
        await call('cleanTargetBackups', 'Keep the newest, dry run', {
          method: 'POST',
          url: `${base}/clean?keepLast=1&dryRun=true`,
        }),
      ),
    );
    await finished(
      jobIdOf(
        await call('deleteTargetBackup', 'One of the target’s backups', {
          method: 'DELETE',
          url: `${base}/${secondId}`,
        }),
      ),
    );

    await finished(
      jobIdOf(
        await call('cleanBackups', 'Keep the newest 7', {
          method: 'POST',
          url: '/api/backup/clean?keepLast=7',
        }),
      ),
      'A clean-up that completed',
    );
    await call('cleanBackups', 'Without a policy', { method: 'POST', url: '/api/backup/clean' });
    await finished(
      jobIdOf(
        await call('deleteBackup', 'One backup', {
          method: 'DELETE',
          url: `/api/backup/${manifest.id}`,
        }),
      ),
    );
    await call('deleteBackup', 'No such backup', {
      method: 'DELETE',
      url: '/api/backup/2020-01-01T00-00-00-000Z',
    });

    await call('listSchedules', 'The schedules', { url: '/api/schedules' });
    await call('changeSchedule', 'A new time and time zone', {
      method: 'PUT',
      url: '/api/schedules/backup',
      body: { pattern: '30 4 * * *', timeZone: 'Europe/Berlin' },
    });
    await call('changeSchedule', 'A pattern that is not cron', {
      method: 'PUT',
      url: '/api/schedules/backup',
      body: { pattern: 'every night' },
    });

    await call('listTargets', 'Every target', { url: '/api/targets' });
    await call('getTarget', 'One target', { url: '/api/targets/default' });
    await call('getTarget', 'No such target', { url: '/api/targets/staging' });
    await call('reloadTargets', 'Every worker reads the file again', {
      method: 'POST',
      url: '/api/targets/reload',
    });
    await call('getPitr', 'A server without point-in-time recovery', {
      url: '/api/targets/default/pitr',
    });

    const metrics = await call('getMetrics', 'A scrape', { url: '/metrics' });
    expect(metrics.statusCode, metrics.body).toBe(200);

    await call('getBoardSignInPage', 'The sign-in form', { url: '/admin/login', auth: false });
    await call('signInToBoard', 'An admin’s token', {
      method: 'POST',
      url: '/admin/login',
      body: { token: token() },
      shownBody: { token: '<an admin’s JWT>' },
      auth: false,
    });
    await call('signInToBoard', 'A token that is not an admin’s', {
      method: 'POST',
      url: '/admin/login',
      body: { token: token({ sub: 'agent@example.com', role: 'AGENT' }) },
      shownBody: { token: '<a JWT without the admin role>' },
      auth: false,
    });
    await call('signOutOfBoard', 'Signed out', {
      method: 'POST',
      url: '/admin/logout',
      auth: false,
    });
  });

  it('records point-in-time recovery, on a server whose archive holds a window', async () => {
    // Its jobs are queued, not run: no worker knows this targets file.
    await worker?.stop();
    worker = undefined;
    const now = Date.now();
    const at = (secondsAgo: number) => new Date(now - secondsAgo * 1000).toISOString();
    const pitrApi = await startConnectedApi({
      ...env.env,
      TARGETS_FILE: await pitrTargetsFile(env, at),
    });
    try {
      const base = '/api/targets/shop';
      await call('getPitr', 'The recoverable window', { url: `${base}/pitr` }, pitrApi);
      await call(
        'listBaseBackups',
        'The archive’s base backups',
        { url: `${base}/pitr/basebackups` },
        pitrApi,
      );
      const baseBackup = jobIdOf(
        await call(
          'createBaseBackup',
          'With a fast checkpoint',
          { method: 'POST', url: `${base}/pitr/basebackups`, body: { checkpoint: 'fast' } },
          pitrApi,
        ),
      );
      await call(
        'cancelJob',
        'A queued job',
        { method: 'POST', url: `/api/jobs/${baseBackup}/cancel` },
        pitrApi,
      );
      await call(
        'pitrRestore',
        'To a time in the window, confirmed',
        {
          method: 'POST',
          url: `${base}/restore`,
          body: { pointInTime: at(200), confirm: env.name },
        },
        pitrApi,
      );
      await call(
        'pitrRestore',
        'To a time after now',
        {
          method: 'POST',
          url: `${base}/restore`,
          body: { pointInTime: new Date(now + 3_600_000).toISOString(), confirm: env.name },
        },
        pitrApi,
      );
      await call(
        'pitrRestore',
        'Without the confirmation',
        { method: 'POST', url: `${base}/restore`, body: { pointInTime: 'latest' } },
        pitrApi,
      );
      await call(
        'cleanPitrArchive',
        'Dry run',
        { method: 'POST', url: `${base}/pitr/clean`, body: { dryRun: true } },
        pitrApi,
      );
    } finally {
      await pitrApi.close();
    }
  });

  it('matches docs/api-examples.json (npm run docs:examples records it)', async () => {
    const fresh = normaliseExamples(operations, {
      literals: {
        [env.backupDir]: '/var/lib/pgkeep/backups',
        [env.name]: 'shop',
      },
    });
    if (RECORD) {
      const file: ApiExamples = { operations: fresh };
      await writeFile(examplesFile, `${JSON.stringify(file, null, 2)}\n`);
    }
    const stored = (JSON.parse(await readFile(examplesFile, 'utf8')) as ApiExamples).operations;
    const listing = (examples: Record<string, ApiExample[]>) =>
      Object.entries(examples).flatMap(([operationId, list]) =>
        list.map((example) => `${operationId}: ${example.title} → ${example.response.status}`),
      );
    expect(listing(stored)).toEqual(listing(fresh));
    for (const [operationId, list] of Object.entries(fresh)) {
      list.forEach((example, i) => {
        const recorded = stored[operationId]?.[i];
        const where = `${operationId}: ${example.title}`;
        expect(shapeDifferences(recorded?.request.body, example.request.body), where).toEqual([]);
        expect(shapeDifferences(recorded?.response.body, example.response.body), where).toEqual([]);
        expect(Object.keys(recorded?.response.headers ?? {}), where).toEqual(
          Object.keys(example.response.headers ?? {}),
        );
      });
    }
  });
});

/**
 * A targets file whose server has `pitr`, and its archive's catalog as a worker leaves it: a
 * base backup ten minutes old and the WAL archived since, so that the window is real to the API.
 */
async function pitrTargetsFile(env: TestEnv, at: (secondsAgo: number) => string): Promise<string> {
  const port = new URL(env.serverUrl).port || '5432';
  const file = path.join(env.backupDir, 'targets.yaml');
  await writeFile(
    file,
    `servers:
  main:
    url: postgres://postgres@127.0.0.1:${port}/postgres
    pitr: { baseBackupSchedule: "off", cleanupSchedule: "off", checkpoint: fast }
targets:
  shop:
    server: main
    database: ${env.name}
    schedules: { backup: "off", cleanup: "off", verify: "off" }
`,
  );
  const catalog = path.join(env.backupDir, 'pitr', 'main', 'catalog');
  await rm(catalog, { recursive: true, force: true });
  await mkdir(catalog, { recursive: true });
  const segmentSize = 16 * 1024 * 1024;
  const segment = (n: number) => `00000001000000000000000${n.toString(16).toUpperCase()}`;
  const hex = (seed: string) => seed.repeat(64);
  const id = '2026-01-01T00-00-00-000Z-000000000001';
  const manifest = baseBackupManifestSchema.parse({
    manifestVersion: 1,
    kind: 'basebackup',
    id,
    server: 'main',
    filename: `basebackup-${id}.tar.zst`,
    size: 3_811_264,
    sha256: hex('a'),
    tarSize: 40_123_392,
    compression: 'zstd',
    encryption: null,
    copies: [
      {
        destination: 'local',
        location: `pitr/main/basebackup-${id}.tar.zst`,
        size: 3_811_264,
        sha256: hex('a'),
        writtenAt: at(600),
      },
    ],
    serverVersion: '15.10',
    serverVersionNum: 150010,
    pgBasebackupVersion: '15.10',
    systemIdentifier: '7461234567890123456',
    timeline: 1,
    startLsn: '0/2000028',
    stopLsn: '0/2000100',
    startSegment: segment(2),
    stopSegment: segment(2),
    walSegmentSize: segmentSize,
    startTime: at(601),
    stopTime: at(600),
    checkpoint: 'fast',
    verification: { tool: 'pg_verifybackup', ok: true, at: at(600) },
    label: null,
    type: 'scheduled',
    requestedBy: 'scheduler',
    jobId: null,
    createdAt: at(601),
    completedAt: at(600),
    durationMs: 1_204,
  });
  const archived = (n: number, coveredSecondsAgo: number) =>
    walEntrySchema.parse({
      op: 'archived',
      name: segment(n),
      filename: `${segment(n)}.zst`,
      walSize: segmentSize,
      walSha256: hex('b'),
      size: 61_440,
      sha256: hex('c'),
      encryption: null,
      destinations: ['local'],
      archivedAt: at(coveredSecondsAgo - 1),
      coveredUntil: at(coveredSecondsAgo),
    });
  await writeFile(
    path.join(catalog, 'archive.json'),
    `${JSON.stringify({ systemIdentifier: manifest.systemIdentifier, walSegmentSize: segmentSize })}\n`,
  );
  await writeFile(
    path.join(catalog, baseBackupManifestFilename(id)),
    `${JSON.stringify(manifest, null, 2)}\n`,
  );
  await writeFile(
    path.join(catalog, 'wal-catalog.jsonl'),
    [archived(2, 590), archived(3, 300), archived(4, 60)]
      .map((entry) => `${JSON.stringify(entry)}\n`)
      .join(''),
  );
  return file;
}
