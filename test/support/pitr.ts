import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import {
  type ArchivedWal,
  type Config,
  type JobName,
  type JobPayloadInput,
  jobCatalog,
  walEntrySchema,
} from '@pgkeep/core';
import { enqueue, type PgkeepQueues } from '@pgkeep/queue';
import type { TestCluster } from './pg-cluster.js';

/** Polls `check` until it returns a value (not undefined), or fails after `timeoutMs`. */
export async function until<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The WAL files a server's catalog lists now (removed ones left out), read from its file. */
export async function archivedWal(
  backupDir: string,
  server: string,
): Promise<Map<string, ArchivedWal>> {
  const live = new Map<string, ArchivedWal>();
  const file = path.join(backupDir, 'pitr', server, 'catalog', 'wal-catalog.jsonl');
  const text = await readFile(file, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    if (!line) continue;
    const entry = walEntrySchema.parse(JSON.parse(line));
    if (entry.op === 'archived') live.set(entry.name, entry);
    else live.delete(entry.name);
  }
  return live;
}

/** Ends the cluster's current segment and waits until the archive holds it; its name. */
export async function switchAndWaitArchived(
  cluster: TestCluster,
  backupDir: string,
  server: string,
): Promise<string> {
  const [row] = await cluster.query<{ name: string }>(
    'SELECT pg_walfile_name(pg_switch_wal()) AS name',
  );
  const name = row?.name as string;
  await until(`segment ${name} archived`, async () =>
    (await archivedWal(backupDir, server)).has(name) ? true : undefined,
  );
  return name;
}

export interface FinishedJob {
  id: string;
  state: 'completed' | 'failed';
  /** The result of a completed job, the failed reason of a failed one. */
  result: unknown;
}

/** Waits until a queued job finished. Its state is read first: a job read before holds no result. */
export function waitForJob(
  queues: PgkeepQueues,
  name: JobName,
  id: string,
  timeoutMs = 180_000,
): Promise<FinishedJob> {
  return until(
    `job ${id}`,
    async () => {
      const queue = queues[jobCatalog[name].queue];
      const state = await queue.getJobState(id);
      if (state !== 'completed' && state !== 'failed') return undefined;
      const job = await queue.getJob(id);
      return {
        id,
        state,
        result: (state === 'completed' ? job?.returnvalue : job?.failedReason) as unknown,
      };
    },
    timeoutMs,
  );
}

/** Queues a job as the API would, and waits until it finished. */
export async function runJob<N extends JobName>(
  queues: PgkeepQueues,
  config: Config,
  name: N,
  payload: JobPayloadInput<N>,
): Promise<FinishedJob> {
  return waitForJob(queues, name, await enqueue(queues, config, name, payload));
}

/** The payload of a manual base backup of server `main`, with a fast checkpoint. */
export function baseBackupRequest(
  targetName: string,
  verify: boolean,
): JobPayloadInput<'basebackup'> {
  return {
    server: 'main',
    checkpoint: 'fast',
    verify,
    label: null,
    type: 'manual',
    targetName,
    requestedBy: 'test',
    requestedAt: new Date().toISOString(),
  };
}

/** The cluster's clock now, as RFC 3339 with microseconds (a point in time to restore to). */
export async function serverClock(cluster: TestCluster): Promise<string> {
  const [row] = await cluster.query<{ at: string }>(
    `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at`,
  );
  if (!row) throw new Error('no clock');
  return row.at;
}

/** The PITR restores' scratch directories under `root`. */
export async function scratchDirectories(root: string): Promise<string[]> {
  return (await readdir(root)).filter((entry) => entry.startsWith('pgkeep-pitr-'));
}
