import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startApi, type TestApi } from './support/api.js';
import {
  createDatabase,
  createTestEnv,
  dropDatabase,
  type TestEnv,
  urlWithDatabase,
  withClient,
} from './support/test-env.js';
import { type LogLine, startWorker, type WorkerProcess } from './support/worker-process.js';

/**
 * Three workers, twenty databases found by one discovery target, scheduled every few seconds
 * for about a minute: every scheduled run queues each database once, each queued backup runs
 * once, the server's cap of 2 dumps at once holds across the workers, and the clean-ups
 * (destructive) of one database never overlap, of all databases at most DESTRUCTIVE_CONCURRENCY.
 */
const DATABASES = 20;
const CAP = 2;
const DESTRUCTIVE = 2;
const RUN_MS = 55_000;

let env: TestEnv;
let api: TestApi;
let dir: string;
const workers: WorkerProcess[] = [];
const databases: string[] = [];

beforeAll(async () => {
  env = await createTestEnv('scale');
  for (let index = 0; index < DATABASES; index += 1) {
    const name = `${env.name}_s${String(index).padStart(2, '0')}`;
    await createDatabase(env.serverUrl, name);
    databases.push(name);
    await withClient(urlWithDatabase(env.serverUrl, name), (client) =>
      client.query('CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 100) AS g'),
    );
  }
  dir = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-scale-'));
  const file = path.join(dir, 'targets.yaml');
  const port = new URL(env.serverUrl).port || 5432;
  await writeFile(
    file,
    `servers:
  main:
    url: postgres://postgres@127.0.0.1:${port}/postgres
    maxConcurrentJobs: ${CAP}
targets:
  all:
    server: main
    database: "*"
    include: ["${env.name}_s*"]
    schedules: { backup: "*/10 * * * * *", cleanup: "5,25,45 * * * * *", verify: "off" }
    retention: { keepLast: 100 }
`,
  );
  const processEnv = {
    ...env.env,
    TARGETS_FILE: file,
    DESTRUCTIVE_CONCURRENCY: String(DESTRUCTIVE),
    BACKUP_CONCURRENCY: '2',
    JOB_KEEP_COMPLETED: '100000',
  };
  api = await startApi(processEnv);
  for (let index = 0; index < 3; index += 1) workers.push(await startWorker(processEnv));
}, 180_000);

afterAll(async () => {
  await Promise.all(workers.map((worker) => worker.stop()));
  await api?.close();
  for (const name of databases) await dropDatabase(env.serverUrl, name);
  await rm(dir, { recursive: true, force: true });
  await env?.cleanup();
}, 180_000);

type Interval = { start: number; end: number; key: string };

/** The largest number of intervals open at one instant. */
function maxOverlap(intervals: Interval[]): number {
  const points = intervals.flatMap((interval) => [
    { at: interval.start, delta: 1 },
    { at: interval.end, delta: -1 },
  ]);
  // A release and an acquire at the same millisecond: the release first.
  points.sort((a, b) => a.at - b.at || a.delta - b.delta);
  let open = 0;
  let most = 0;
  for (const point of points) {
    open += point.delta;
    most = Math.max(most, open);
  }
  return most;
}

describe('many targets, many workers', () => {
  it('runs every scheduled backup once, within the caps', async () => {
    const started = Date.now();
    // Let the schedules fire for about a minute.
    await vi.waitFor(
      () => {
        if (Date.now() - started < RUN_MS) throw new Error('still running');
      },
      { timeout: RUN_MS + 5_000, interval: 1_000 },
    );
    // Stop the schedulers, then let every queued job finish.
    for (const queue of Object.values(api.services.queues)) {
      for (const scheduler of await queue.getJobSchedulers(0, -1)) {
        await queue.removeJobScheduler(scheduler.key);
      }
    }
    await vi.waitFor(
      async () => {
        for (const queue of Object.values(api.services.queues)) {
          const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
          const left = Object.values(counts).reduce((sum, count) => sum + count, 0);
          if (left > 0) throw new Error(`${queue.name}: ${left} jobs left`);
        }
      },
      { timeout: 120_000, interval: 500 },
    );

    const backups = api.services.queues.backups;
    const discoveries = (await backups.getJobs(['completed', 'failed'], 0, -1)).filter(
      (job) => job.name === 'discover' && job.data.job === 'backup',
    );
    const failedDiscoveries = discoveries.filter((job) => job.failedReason);
    expect(failedDiscoveries.map((job) => job.failedReason)).toEqual([]);
    // One scheduled run every 10 s for ~55 s: the runs' scheduled times (in their ids) follow
    // one another 10 s apart, so none was skipped, and none is there twice.
    expect(discoveries.length).toBeGreaterThanOrEqual(5);
    const times = discoveries
      .map((job) => Number(String(job.id).split(':').at(-1)))
      .sort((a, b) => a - b);
    expect(new Set(times).size).toBe(times.length);
    expect(times.slice(1).map((time, index) => time - (times[index] as number))).toEqual(
      times.slice(1).map(() => 10_000),
    );
    const queued = discoveries.flatMap(
      (job) => (job.returnvalue as { queued: { target: string; jobId: string }[] }).queued,
    );
    expect(queued.length).toBe(discoveries.length * DATABASES);
    // Each run queued each database once.
    expect(new Set(queued.map((entry) => entry.jobId)).size).toBe(queued.length);

    // Every queued backup ran once and completed: one manifest per queued job, per target.
    const byTarget = new Map<string, string[]>();
    for (const name of databases) {
      const target = `main/${name}`;
      const store = await api.services.registry.storeFor(
        api.services.registry.require(target).info,
      );
      const { manifests } = await store.listManifests();
      byTarget.set(
        target,
        manifests.map((manifest) => manifest.jobId ?? ''),
      );
    }
    for (const [target, jobIds] of byTarget) {
      const expected = queued
        .filter((entry) => entry.target === target)
        .map((entry) => entry.jobId);
      expect(jobIds.sort(), target).toEqual(expected.sort());
    }

    // The server's cap, from every worker's log: never more than CAP dumps at once.
    const lines: LogLine[] = workers.flatMap((worker) => worker.lines);
    const slots: Interval[] = lines
      .filter((line) => line.msg === 'server slot released')
      .map((line) => ({
        start: Date.parse(String(line.acquiredAt)),
        end: Date.parse(String(line.releasedAt)),
        key: String(line.target),
      }));
    expect(slots.length).toBe(queued.length);
    expect(maxOverlap(slots)).toBeLessThanOrEqual(CAP);
    expect(maxOverlap(slots)).toBe(CAP); // the cap was reached, so the check meant something

    // Clean-ups: of one database never two at once; of all, at most DESTRUCTIVE at once.
    const cleanups = (await api.services.queues.maintenance.getJobs(['completed'], 0, -1))
      .filter((job) => job.name === 'cleanup')
      .map((job) => {
        const lock = (job.returnvalue as { lock: { acquiredAt: string; releasedAt: string } }).lock;
        return {
          start: Date.parse(lock.acquiredAt),
          end: Date.parse(lock.releasedAt),
          key: String(job.data.targetName),
        };
      });
    expect(cleanups.length).toBeGreaterThanOrEqual(DATABASES * 2);
    expect(maxOverlap(cleanups)).toBeLessThanOrEqual(DESTRUCTIVE);
    for (const name of databases) {
      const own = cleanups.filter((interval) => interval.key === `main/${name}`);
      expect(maxOverlap(own), name).toBeLessThanOrEqual(1);
    }
    // The evidence, for whoever reads the run's output.
    console.info(
      JSON.stringify({
        discoveryRuns: discoveries.length,
        firstRun: new Date(times[0] ?? 0).toISOString(),
        lastRun: new Date(times.at(-1) ?? 0).toISOString(),
        backupsQueued: queued.length,
        backupsStored: [...byTarget.values()].reduce((sum, ids) => sum + ids.length, 0),
        maxDumpsAtOnce: maxOverlap(slots),
        cleanups: cleanups.length,
        maxCleanupsAtOnce: maxOverlap(cleanups),
      }),
    );
  }, 300_000);
});
