import { execFileSync } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  type ArchivedWal,
  type Config,
  type JobName,
  type JobPayloadInput,
  loadConfig,
} from '@pgkeep/core';
import {
  closeQueues,
  createRedisConnection,
  enqueue,
  openQueues,
  type PgkeepQueues,
} from '@pgkeep/queue';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCluster, type TestCluster } from './support/pg-cluster.js';
import {
  archivedWal,
  baseBackupRequest,
  runJob as runPitrJob,
  scratchDirectories,
  serverClock,
  switchAndWaitArchived,
  until,
  waitForJob as waitForPitrJob,
} from './support/pitr.js';
import { childrenOf, isRunning } from './support/processes.js';
import { createTestEnv, type TestEnv } from './support/test-env.js';
import { startWorker, type WorkerProcess } from './support/worker-process.js';

/**
 * Point-in-time restore of one database of a server of the tests' own: rows written at t1 and
 * t2, then at t3 rows deleted and a table dropped; a restore to a time between t2 and t3 brings
 * back exactly what was there then, through a temporary instance that leaves nothing behind.
 */

let env: TestEnv;
let cluster: TestCluster;
let dir: string;
let scratch: string;
let processEnv: Record<string, string>;
let config: Config;
let redis: Redis;
let queues: PgkeepQueues;
let worker: WorkerProcess;
/** A time between the t2 and t3 commits, by the server's clock. */
let between: string;
/** A time after the last commit, before the archive's end. */
let afterLast: string;
/** The WAL segment t2's commit is in: every recovery to `between` reads it. */
let t2Segment: string;

const _catalogFile = () => path.join(env.backupDir, 'pitr', 'main', 'catalog', 'wal-catalog.jsonl');

const archived = () => archivedWal(env.backupDir, 'main');

const archiveNow = () => switchAndWaitArchived(cluster, env.backupDir, 'main');

const runJob = <N extends JobName>(name: N, payload: JobPayloadInput<N>) =>
  runPitrJob(queues, config, name, payload);

const waitForJob = (name: JobName, id: string) => waitForPitrJob(queues, name, id);

const request = (overrides: Partial<JobPayloadInput<'pitr-restore'>>) => ({
  pointInTime: between,
  target: 'orders',
  targetName: 'orders',
  requestedBy: 'test',
  requestedAt: new Date().toISOString(),
  ...overrides,
});

async function names(database: string): Promise<string[]> {
  const rows = await cluster.query<{ name: string }>(
    'SELECT name FROM users ORDER BY name',
    [],
    database,
  );
  return rows.map((row) => row.name);
}

async function tables(database: string): Promise<string[]> {
  const rows = await cluster.query<{ t: string }>(
    "SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    [],
    database,
  );
  return rows.map((row) => row.t);
}

const serverNow = () => serverClock(cluster);

const scratchDirs = () => scratchDirectories(scratch);

beforeAll(async () => {
  [env, cluster] = await Promise.all([createTestEnv('pitrrestore'), startTestCluster()]);
  for (const database of ['orders', 'billing']) await cluster.query(`CREATE DATABASE ${database}`);
  await cluster.query(
    'CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL)',
    [],
    'orders',
  );
  await cluster.query('CREATE TABLE audit (id serial PRIMARY KEY, note text)', [], 'orders');
  await cluster.query("INSERT INTO audit (note) VALUES ('kept')", [], 'orders');
  await cluster.query('CREATE TABLE invoices (id serial PRIMARY KEY, total int)', [], 'billing');
  dir = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-pitrr-'));
  scratch = await mkdtemp(path.join('/tmp', 'pk-scr-'));
  // The temporary instance runs as another OS user (postgres) when the tests run as root.
  await chmod(scratch, 0o711);
  const targetsFile = path.join(dir, 'targets.yaml');
  await writeFile(
    targetsFile,
    `
servers:
  main:
    url: ${cluster.url}
    pitr:
      baseBackupSchedule: "off"
      cleanupSchedule: "off"
      checkpoint: fast
      switchWalSeconds: 0
targets:
  orders:
    server: main
    database: orders
    schedules: { backup: "off", cleanup: "off", verify: "off" }
  billing:
    server: main
    database: billing
    schedules: { backup: "off", cleanup: "off", verify: "off" }
`,
  );
  processEnv = {
    ...env.env,
    TARGETS_FILE: targetsFile,
    PITR_SCRATCH_DIR: scratch,
    PITR_STATUS_INTERVAL_MS: '300',
  };
  config = loadConfig({ ...processEnv, LOG_LEVEL: 'silent' }, { requireAuth: false });
  redis = createRedisConnection(env.redisUrl, 'api', 'pgkeep-pitr-restore-test');
  queues = openQueues(redis, config.REDIS_PREFIX, { onError: () => {} });
  worker = await startWorker(processEnv);

  const base = await runJob('basebackup', baseBackupRequest('orders', false));
  expect(base.state, String(base.result)).toBe('completed');
  // t1, t2: rows in; then the time to restore to; t3: rows gone, a table dropped.
  await cluster.query("INSERT INTO users (name) VALUES ('alice')", [], 'orders');
  await cluster.query("INSERT INTO users (name) VALUES ('bob')", [], 'orders');
  await cluster.query('INSERT INTO invoices (total) VALUES (10)', [], 'billing');
  // The server's clock between the commits: t2's commit time is before it, t3's after it.
  between = await serverNow();
  const [position] = await cluster.query<{ name: string }>(
    'SELECT pg_walfile_name(pg_current_wal_lsn()) AS name',
  );
  t2Segment = position?.name as string;
  await cluster.query("INSERT INTO users (name) VALUES ('carol')", [], 'orders');
  await cluster.query("DELETE FROM users WHERE name = 'alice'", [], 'orders');
  await cluster.query('DROP TABLE audit', [], 'orders');
  await cluster.query('INSERT INTO invoices (total) VALUES (20)', [], 'billing');
  afterLast = await serverNow();
  await archiveNow();
});

afterAll(async () => {
  await worker?.stop();
  if (queues) await closeQueues(queues);
  redis?.disconnect();
  await cluster?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
  if (scratch) await rm(scratch, { recursive: true, force: true });
  await env?.cleanup();
});

describe('point-in-time restore', () => {
  it('restores one database as it was between t2 and t3, the other database unchanged', async () => {
    expect(await names('orders')).toEqual(['bob', 'carol']);
    const outcome = await runJob('pitr-restore', request({}));
    expect(outcome.state, String(outcome.result)).toBe('completed');
    const result = outcome.result as {
      recoveredTo: string | null;
      previousDatabase: string | null;
      walFilesFetched: number;
      phases: Record<string, number>;
      downtimeMs: number;
    };
    console.log(
      'PITR restore phases (ms):',
      JSON.stringify(result.phases),
      'downtime',
      result.downtimeMs,
    );
    expect(await names('orders')).toEqual(['alice', 'bob']);
    expect(await tables('orders')).toEqual(['audit', 'users']);
    expect(
      (await cluster.query<{ note: string }>('SELECT note FROM audit', [], 'orders')).map(
        (r) => r.note,
      ),
    ).toEqual(['kept']);
    // The other database of the server was not touched.
    expect(
      (
        await cluster.query<{ total: number }>(
          'SELECT total FROM invoices ORDER BY id',
          [],
          'billing',
        )
      ).map((row) => row.total),
    ).toEqual([10, 20]);
    // The database it replaced is kept, as after any restore.
    expect(result.previousDatabase).not.toBeNull();
    const kept = await cluster.query('SELECT 1 FROM pg_database WHERE datname = $1', [
      result.previousDatabase,
    ]);
    expect(kept).toHaveLength(1);
    expect(result.walFilesFetched).toBeGreaterThan(0);
    expect(Date.parse(result.recoveredTo as string)).toBeLessThanOrEqual(Date.parse(between));
    expect(await scratchDirs()).toEqual([]);
  });

  it('restores beside the live database, which stays as it is', async () => {
    const before = await names('orders');
    const outcome = await runJob(
      'pitr-restore',
      request({ target: 'orders_then', keepDump: true }),
    );
    expect(outcome.state, String(outcome.result)).toBe('completed');
    expect(await names('orders_then')).toEqual(['alice', 'bob']);
    expect(await names('orders')).toEqual(before);
    expect((outcome.result as { backupId: string | null }).backupId).not.toBeNull();
    await cluster.query('DROP DATABASE orders_then');
  });

  it('refuses a time in the future or before the window, and changes nothing', async () => {
    const future = await runJob(
      'pitr-restore',
      request({ pointInTime: new Date(Date.now() + 3_600_000).toISOString() }),
    );
    expect(future.state).toBe('failed');
    expect(String(future.result)).toMatch(/PITR_TIME_IN_FUTURE/);
    const early = await runJob('pitr-restore', request({ pointInTime: '2020-01-01T00:00:00Z' }));
    expect(early.state).toBe('failed');
    expect(String(early.result)).toMatch(/PITR_TIME_OUTSIDE_WINDOW/);
    expect(await names('orders')).toEqual(['alice', 'bob']);
  });

  it('a time after the last transaction, and latest, give the archive end', async () => {
    for (const [pointInTime, target] of [
      [afterLast, 'orders_end'],
      ['latest', 'orders_latest'],
    ] as const) {
      const outcome = await runJob('pitr-restore', request({ pointInTime, target }));
      expect(outcome.state, String(outcome.result)).toBe('completed');
      expect(await names(target)).toEqual(['bob', 'carol']);
      expect(await tables(target)).toEqual(['users']);
      await cluster.query(`DROP DATABASE ${target}`);
    }
  });

  it('a corrupted WAL segment fails the recovery on its checksum; the target is unchanged', async () => {
    const victim = (await archived()).get(t2Segment) as ArchivedWal;
    expect(victim).toBeDefined();
    const file = path.join(env.backupDir, 'pitr', 'main', victim.filename);
    const original = await readFile(file);
    const wal = execFileSync('zstd', ['-d', '-c', '-q'], { input: original, maxBuffer: 64 << 20 });
    // Same length, one byte different, compressed again: only the sha256 can tell.
    wal[1_000_000] = (wal[1_000_000] ?? 0) ^ 0xff;
    await writeFile(file, execFileSync('zstd', ['-q', '-c'], { input: wal, maxBuffer: 64 << 20 }));
    try {
      const outcome = await runJob('pitr-restore', request({}));
      expect(outcome.state).toBe('failed');
      expect(String(outcome.result)).toMatch(/CHECKSUM_MISMATCH.*does not match its checksum/);
      expect(await names('orders')).toEqual(['alice', 'bob']);
      expect(await scratchDirs()).toEqual([]);
    } finally {
      await writeFile(file, original);
    }
  });

  it('a worker SIGKILLed during recovery leaves no postmaster; the next start removes the scratch directory', async () => {
    const id = await enqueue(queues, config, 'pitr-restore', request({}));
    const postmaster = await until(
      'the temporary postmaster',
      async () => childrenOf(worker.pid).find((child) => child.command === 'postgres')?.pid,
      120_000,
    );
    await worker.kill();
    await until('the postmaster gone', async () =>
      (await isRunning(postmaster)) ? undefined : true,
    );
    expect((await scratchDirs()).length).toBe(1);
    worker = await startWorker(processEnv);
    // The new worker sweeps the scratch directory, then runs the job again to the end.
    const outcome = await waitForJob('pitr-restore', id);
    expect(['completed', 'failed']).toContain(outcome.state);
    expect(await scratchDirs()).toEqual([]);
    expect(await names('orders')).toEqual(['alice', 'bob']);
  });
});
