import { decodeJobError, type JobName, jobCatalog, jobNames, metricsHashKey } from '@pgkeep/core';
import type { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { failedForGood } from './final-failure.js';

/*
 * Job outcomes and histogram buckets, counted in the deployment's metrics hash (metricsHashKey)
 * that every worker on every host adds to (HINCRBY is atomic) and that the API reads when
 * Prometheus scrapes it. Counters therefore survive restarts of any process and add up across
 * all of them; they restart from zero only when the hash is deleted, which Prometheus' rate()
 * treats as a counter reset.
 *
 * Fields: `jobs_total:<job>:<outcome>`; histograms `<name>[:<job>]:le:<bound>` (cumulative,
 * as Prometheus wants them), `<name>[:<job>]:sum`, `<name>[:<job>]:count`. Other writers may
 * add `notifications_sent_total:<channel>` and `notifications_failed_total:<channel>`.
 */

export const jobOutcomes = ['completed', 'failed', 'cancelled'] as const;
export type JobOutcome = (typeof jobOutcomes)[number];

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/**
 * Fixed bucket bounds: changing them later leaves the old fields behind, so they are chosen
 * once, wide enough for a small panel database and for a large one.
 */
export const histogramBuckets = {
  backup_duration_seconds: [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800],
  backup_size_bytes: [
    64 * KiB,
    256 * KiB,
    MiB,
    4 * MiB,
    16 * MiB,
    64 * MiB,
    256 * MiB,
    GiB,
    4 * GiB,
    16 * GiB,
    64 * GiB,
    256 * GiB,
    1024 * GiB,
  ],
  lock_wait_seconds: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 30, 60, 300, 600, 1800, 3600],
} as const;
export type HistogramName = keyof typeof histogramBuckets;

/** The jobs that wait for the cluster-wide lock and report how long they waited. */
export const lockingJobs = jobNames.filter((name) => jobCatalog[name].destructive);

export interface HistogramSnapshot {
  /** Cumulative counts per upper bound, ascending, the last one `+Inf`. */
  buckets: { le: number; count: number }[];
  sum: number;
  count: number;
}

export interface JobMetricsSnapshot {
  jobs: Record<JobName, Record<JobOutcome, number>>;
  backupDurationSeconds: HistogramSnapshot;
  backupSizeBytes: HistogramSnapshot;
  /** By job, for the destructive jobs (see `lockingJobs`). */
  lockWaitSeconds: Record<string, HistogramSnapshot>;
  /** Whatever channels the notifier has counted, sorted by name. */
  notifications: { channel: string; sent: number; failed: number }[];
}

export interface HashIncrement {
  field: string;
  by: number;
  /** A sum of seconds: HINCRBYFLOAT rather than HINCRBY. */
  float: boolean;
}

/**
 * For BullMQ's `failed` event (after the failure was recorded): null while the job will be
 * tried again, else how it ended (a verify that found its backup bad fails as VERIFY_FAILED).
 */
export function finalOutcomeOfFailure(
  job: Pick<Job, 'attemptsMade' | 'opts'>,
  error: Pick<Error, 'name' | 'message'>,
): JobOutcome | null {
  if (!failedForGood(job, error)) return null;
  return decodeJobError(error.message).code === 'JOB_CANCELLED' ? 'cancelled' : 'failed';
}

function observe(name: HistogramName, value: number, label?: string): HashIncrement[] {
  const base = label === undefined ? name : `${name}:${label}`;
  const increments: HashIncrement[] = histogramBuckets[name]
    .filter((bound) => value <= bound)
    .map((bound) => ({ field: `${base}:le:${bound}`, by: 1, float: false }));
  increments.push(
    { field: `${base}:le:+Inf`, by: 1, float: false },
    { field: `${base}:sum`, by: value, float: true },
    { field: `${base}:count`, by: 1, float: false },
  );
  return increments;
}

/** What one finished job adds to the hash: its outcome, and its result's measurements. */
export function jobOutcomeIncrements(
  name: JobName,
  outcome: JobOutcome,
  result?: unknown,
): HashIncrement[] {
  const increments: HashIncrement[] = [
    { field: `jobs_total:${name}:${outcome}`, by: 1, float: false },
  ];
  if (result === undefined || result === null) return increments;
  if (name === 'backup' && outcome === 'completed') {
    const manifest = jobCatalog.backup.result.safeParse(result);
    if (manifest.success) {
      increments.push(
        ...observe('backup_duration_seconds', manifest.data.durationMs / 1000),
        ...observe('backup_size_bytes', manifest.data.size),
      );
    }
  }
  const waitedMs = (result as { lock?: { waitedMs?: unknown } }).lock?.waitedMs;
  if (lockingJobs.includes(name) && typeof waitedMs === 'number' && waitedMs >= 0) {
    increments.push(...observe('lock_wait_seconds', waitedMs / 1000, name));
  }
  return increments;
}

/** Adds a finished job to the shared counters, all fields in one transaction. */
export async function recordJobOutcome(
  redis: Redis,
  prefix: string,
  name: JobName,
  outcome: JobOutcome,
  result?: unknown,
): Promise<void> {
  const key = metricsHashKey(prefix);
  const transaction = redis.multi();
  for (const { field, by, float } of jobOutcomeIncrements(name, outcome, result)) {
    if (float) transaction.hincrbyfloat(key, field, by);
    else transaction.hincrby(key, field, by);
  }
  const replies = await transaction.exec();
  const failed = replies?.find(([error]) => error !== null)?.[0];
  if (failed) throw failed;
}

function histogramFrom(
  hash: Record<string, string>,
  name: HistogramName,
  label?: string,
): HistogramSnapshot {
  const base = label === undefined ? name : `${name}:${label}`;
  const read = (field: string) => {
    const value = Number(hash[`${base}:${field}`] ?? 0);
    return Number.isFinite(value) ? value : 0;
  };
  return {
    buckets: [
      ...histogramBuckets[name].map((bound) => ({ le: bound, count: read(`le:${bound}`) })),
      { le: Number.POSITIVE_INFINITY, count: read('le:+Inf') },
    ],
    sum: read('sum'),
    count: read('count'),
  };
}

/** The hash as numbers; every known job and outcome is present (zero when never counted). */
export function parseJobMetrics(hash: Record<string, string>): JobMetricsSnapshot {
  const count = (field: string) => {
    const value = Number(hash[field] ?? 0);
    return Number.isFinite(value) ? value : 0;
  };
  const jobs = Object.fromEntries(
    jobNames.map((name) => [
      name,
      Object.fromEntries(
        jobOutcomes.map((outcome) => [outcome, count(`jobs_total:${name}:${outcome}`)]),
      ),
    ]),
  ) as JobMetricsSnapshot['jobs'];
  const channels = new Set<string>();
  for (const field of Object.keys(hash)) {
    const match = /^notifications_(?:sent|failed)_total:(.+)$/.exec(field);
    if (match?.[1]) channels.add(match[1]);
  }
  return {
    jobs,
    backupDurationSeconds: histogramFrom(hash, 'backup_duration_seconds'),
    backupSizeBytes: histogramFrom(hash, 'backup_size_bytes'),
    lockWaitSeconds: Object.fromEntries(
      lockingJobs.map((name) => [name, histogramFrom(hash, 'lock_wait_seconds', name)]),
    ),
    notifications: [...channels].sort().map((channel) => ({
      channel,
      sent: count(`notifications_sent_total:${channel}`),
      failed: count(`notifications_failed_total:${channel}`),
    })),
  };
}

export async function readJobMetrics(redis: Redis, prefix: string): Promise<JobMetricsSnapshot> {
  return parseJobMetrics(await redis.hgetall(metricsHashKey(prefix)));
}
