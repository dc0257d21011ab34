import type { BackupManifest, JobResult } from '@pgkeep/core';
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
import { databaseSnapshot, tableRows } from './support/panel-schema.js';
import { createTestEnv, type TestEnv, withClient } from './support/test-env.js';
import { startWorker, type WorkerProcess } from './support/worker-process.js';

/**
 * A range-partitioned table whose last partition is itself partitioned: its rows live in the
 * leaf partitions only. A table backup of the parent carries every partition with it.
 */
const leaves = [
  'public.events_2024',
  'public.events_2025',
  'public.events_2026_a',
  'public.events_2026_b',
];
const partitionTree = [
  'public.events',
  'public.events_2024',
  'public.events_2025',
  'public.events_2026',
  'public.events_2026_a',
  'public.events_2026_b',
];

let env: TestEnv;
let api: TestApi;
let worker: WorkerProcess;

beforeAll(async () => {
  env = await createTestEnv('partitions');
  await withClient(env.databaseUrl, (client) =>
    client.query(`
      CREATE TABLE events (id int NOT NULL, at date NOT NULL, body text, PRIMARY KEY (id, at))
        PARTITION BY RANGE (at);
      CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
      CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
      CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')
        PARTITION BY RANGE (id);
      CREATE TABLE events_2026_a PARTITION OF events_2026 FOR VALUES FROM (0) TO (1000);
      CREATE TABLE events_2026_b PARTITION OF events_2026 FOR VALUES FROM (1000) TO (MAXVALUE);
      INSERT INTO events SELECT g, date '2024-01-01' + g, 'a ' || g FROM generate_series(1, 100) g;
      INSERT INTO events SELECT g, date '2025-01-01' + g % 300, 'b ' || g FROM generate_series(101, 250) g;
      INSERT INTO events SELECT g, date '2026-03-01', 'c ' || g FROM generate_series(900, 1069) g;
      CREATE TABLE notes (id int PRIMARY KEY, body text);
      INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 20) g;
    `),
  );
  [api, worker] = await Promise.all([startConnectedApi(env.env), startWorker(env.env)]);
});

afterAll(async () => {
  await worker?.stop();
  await api?.close();
  await env?.cleanup();
});

const snapshot = () => databaseSnapshot(env.databaseUrl);

async function backup(body: Record<string, unknown>): Promise<BackupManifest> {
  const job = await waitForJob(api, await postJob(api, '/api/backup', body));
  expect(job.error).toBeNull();
  return job.result as unknown as BackupManifest;
}

async function restore(id: string): Promise<PolledJob> {
  return waitForJob(api, await postJob(api, `/api/backup/${id}/restore`, { confirm: env.name }));
}

describe('a table backup of a partitioned table', () => {
  it.each([
    { format: 'custom', compression: 'zstd' },
    { format: 'plain', compression: 'none' },
  ])(
    'carries every partition and restores each one row for row ($format)',
    async ({ format, compression }) => {
      const manifest = await backup({ tables: ['events'], format, compression });
      expect(manifest.tables).toEqual(partitionTree);
      // Rows are counted where they live, in the leaves, so none is counted twice.
      expect(manifest.rowCounts).toEqual({
        'public.events_2024': 100,
        'public.events_2025': 150,
        'public.events_2026_a': 100,
        'public.events_2026_b': 70,
      });
      const atBackup = await snapshot();
      expect(atBackup['public.events']).toHaveLength(420);

      await withClient(env.databaseUrl, (client) =>
        client.query(`
        DELETE FROM events WHERE id % 4 = 0;
        UPDATE events SET body = 'changed' WHERE id BETWEEN 100 AND 120;
        INSERT INTO events VALUES (5000, '2026-06-01', 'after the backup');
        DROP TABLE events_2025;
        UPDATE notes SET body = 'changed after the backup' WHERE id <= 5;
      `),
      );
      const changed = await snapshot();

      const job = await restore(manifest.id);
      expect(job.error).toBeNull();
      expect(job.result).toMatchObject({ mode: 'tables', previousDatabase: null });
      const after = await snapshot();
      for (const table of [...leaves, 'public.events', 'public.events_2026']) {
        expect(after[table], table).toEqual(atBackup[table]);
      }
      expect(after['public.notes']).toEqual(changed['public.notes']);
      // Still one partitioned table: rows inserted through the parent land in their partition.
      await withClient(env.databaseUrl, (client) =>
        client.query(`INSERT INTO events VALUES (7000, '2025-05-05', 'routed')`),
      );
      expect(await tableRows(env.databaseUrl, 'public.events_2025')).toContain(
        '(7000,2025-05-05,routed)',
      );
      await withClient(env.databaseUrl, (client) =>
        client.query('DELETE FROM events WHERE id = 7000'),
      );
    },
  );

  it('passes a verify with a scratch restore: each partition has its counted rows', async () => {
    const manifest = await backup({ tables: ['events'] });
    const job = await waitForJob(
      api,
      await postJob(api, `/api/backup/${manifest.id}/verify`, { restore: true }),
    );
    const result = job.result as JobResult<'verify'>;
    expect(result.checks.find((check) => check.name === 'row-counts')).toMatchObject({ ok: true });
    expect(result.ok).toBe(true);
  });

  it('is refused up front when a partition has a name a table backup cannot carry', async () => {
    await withClient(env.databaseUrl, (client) =>
      client.query(`
        CREATE TABLE metrics (id int, at date) PARTITION BY RANGE (at);
        CREATE TABLE "metrics-2024" PARTITION OF metrics FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
      `),
    );
    try {
      const before = await api.services.queues.backups.getJobCounts();
      const response = await api.app.inject({
        method: 'POST',
        url: '/api/backup',
        headers: adminHeaders(),
        payload: { tables: ['metrics'] },
      });
      expect(response.statusCode).toBe(400);
      expect(json(response).error.code).toBe('INVALID_TABLE_NAME');
      expect(json(response).error.message).toContain('metrics-2024');
      expect(await api.services.queues.backups.getJobCounts()).toEqual(before);
    } finally {
      await withClient(env.databaseUrl, (client) => client.query('DROP TABLE metrics'));
    }
  });
});
