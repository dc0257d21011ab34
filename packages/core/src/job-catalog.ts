import { createHash, randomUUID } from 'node:crypto';
import { z } from 'zod';
import { backupIdRegex } from './backup-id.js';
import {
  backupFormatSchema,
  backupTypeSchema,
  compressionSchema,
  dumpJobsSchema,
  manifestSchema,
} from './manifest.js';
import { databaseNameSchema, labelSchema, requesterSchema } from './names.js';
import { baseBackupManifestSchema } from './pitr-manifest.js';
import { tableListSchema } from './tables.js';

/**
 * The one place where queue names, job names, payloads and results are defined. The API and
 * the worker derive their types from here; no other file spells a queue or job name.
 *
 * Two queues: `backups` runs non-destructive work side by side (up to the configured
 * concurrency); `maintenance` carries destructive jobs, which also take the cluster-wide
 * exclusive lock, so they never overlap anywhere.
 */
export const queueNames = { backups: 'backups', maintenance: 'maintenance' } as const;
export type QueueName = (typeof queueNames)[keyof typeof queueNames];

/**
 * The pgkeep target a job works on: a configured target's name, or `<server>/<database>` for a
 * database found by a discovery target. Jobs queued before targets existed belong to `default`.
 */
export const targetRefSchema = z
  .string()
  .regex(
    /^[a-z0-9_-]{1,63}(\/[A-Za-z_][A-Za-z0-9_$-]{0,62})?$/,
    'must be a target name, or <server>/<database>',
  );

const requester = {
  targetName: targetRefSchema.default('default'),
  requestedBy: requesterSchema,
  requestedAt: z.iso.datetime(),
};

const lockTimes = z.object({
  waitedMs: z.number().int().nonnegative(),
  acquiredAt: z.iso.datetime(),
  releasedAt: z.iso.datetime(),
});

const verifyCheck = z.object({
  name: z.enum(['sha256', 'archive-read', 'scratch-restore', 'row-counts']),
  ok: z.boolean(),
  detail: z.string(),
});

export const retentionSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('keep-last'), keepLast: z.number().int().min(1).max(10_000) }),
  z.object({
    kind: z.literal('gfs'),
    days: z.number().int().min(0).max(10_000),
    weeks: z.number().int().min(0).max(10_000),
    months: z.number().int().min(0).max(10_000),
    years: z.number().int().min(0).max(1_000),
  }),
]);
export type Retention = z.infer<typeof retentionSchema>;

/**
 * Schedules, each running one job. BullMQ names a scheduled run `repeat:<scheduler id>:<time>`;
 * the scheduler id `schedule-<name>` says which job it is.
 */
export const scheduleJobs = { backup: 'backup', cleanup: 'cleanup', verify: 'verify' } as const;
export type ScheduleName = keyof typeof scheduleJobs;
export const scheduleNames = Object.keys(scheduleJobs) as ScheduleName[];
export const scheduleNameSchema = z.enum(scheduleNames as [ScheduleName, ...ScheduleName[]]);

/**
 * How often a job runs before it fails for good: `attempts` in all (a number, or the setting
 * that says), waiting `backoffMs`, then twice that, and so on, between them. Only retryable
 * errors retry; destructive jobs retry only what is worth retrying (a lock timeout, a lost
 * connection), anything else fails at once as unrecoverable.
 */
export interface RetryPolicy {
  attempts: number | 'BACKUP_ATTEMPTS';
  backoffMs: number;
}
const backupRetry: RetryPolicy = { attempts: 'BACKUP_ATTEMPTS', backoffMs: 30_000 };
const defaultRetry: RetryPolicy = { attempts: 3, backoffMs: 10_000 };

/** What a log line about a finished scheduled run says: its fields and its message. */
export interface RunLine {
  fields: Record<string, unknown>;
  message: string;
}

/**
 * Each job: its queue; whether it is destructive (the cluster-wide exclusive lock); its retries;
 * whether its end is announced (`notified`: the jobs an operator must hear about when they
 * fail); whether completing it is a success of its target (`countsTargetSuccess`: not for a
 * discovery run, which only queues the targets' jobs, though its failure is the target's); the
 * log line of a scheduled run that completed; its payload and result schemas.
 */
export const jobCatalog = {
  backup: {
    queue: queueNames.backups,
    destructive: false,
    retry: backupRetry,
    notified: true,
    countsTargetSuccess: true,
    scheduledRunLine: (result: { filename?: string }): RunLine => ({
      fields: { filename: result.filename },
      message: 'scheduled backup completed',
    }),
    payload: z.object({
      tables: tableListSchema.nullable(),
      format: backupFormatSchema,
      /** pg_dump --jobs of a directory-format backup; null: the worker's default. */
      jobs: dumpJobsSchema.nullable().default(null),
      compression: compressionSchema,
      label: labelSchema.nullable(),
      type: backupTypeSchema,
      /** Tables left out of a full backup (the target's `tables.exclude`). */
      excludeTables: tableListSchema.nullable().default(null),
      ...requester,
    }),
    result: manifestSchema,
  },
  verify: {
    queue: queueNames.backups,
    destructive: false,
    retry: defaultRetry,
    notified: true,
    countsTargetSuccess: true,
    // A verify that finds the backup bad fails, and is logged as a failed scheduled verify.
    scheduledRunLine: (result: { backupId?: string }): RunLine => ({
      fields: { backupId: result.backupId, ok: true },
      message: 'scheduled verify completed',
    }),
    payload: z.object({
      /** `latest`: the newest completed backup when the job runs (scheduled test restores). */
      backupId: z.union([z.string().regex(backupIdRegex), z.literal('latest')]),
      restore: z.boolean(),
      ...requester,
    }),
    result: z.object({
      backupId: z.string(),
      ok: z.boolean(),
      checks: z.array(verifyCheck),
      durationMs: z.number().int().nonnegative(),
    }),
  },
  restore: {
    queue: queueNames.maintenance,
    destructive: true,
    retry: defaultRetry,
    notified: true,
    countsTargetSuccess: true,
    scheduledRunLine: null,
    payload: z.object({
      backupId: z.string().regex(backupIdRegex),
      target: databaseNameSchema,
      ...requester,
    }),
    result: z.object({
      backupId: z.string(),
      target: z.string(),
      mode: z.enum(['database', 'tables']),
      /** The database the restore replaced, kept for rollback (null: there was none). */
      previousDatabase: z.string().nullable(),
      rowCounts: z.record(z.string(), z.number().int().nonnegative()),
      downtimeMs: z.number().int().nonnegative(),
      durationMs: z.number().int().nonnegative(),
      lock: lockTimes,
    }),
  },
  delete: {
    queue: queueNames.maintenance,
    destructive: true,
    retry: defaultRetry,
    notified: false,
    countsTargetSuccess: true,
    scheduledRunLine: null,
    payload: z.object({ backupId: z.string().regex(backupIdRegex), ...requester }),
    result: z.object({
      deletedCount: z.number().int().nonnegative(),
      deleted: z.array(z.string()),
      lock: lockTimes,
    }),
  },
  cleanup: {
    queue: queueNames.maintenance,
    destructive: true,
    retry: defaultRetry,
    notified: false,
    countsTargetSuccess: true,
    scheduledRunLine: (result: { deletedCount?: number }): RunLine => ({
      fields: { deletedCount: result.deletedCount },
      message: 'scheduled cleanup completed',
    }),
    payload: z.object({
      retention: retentionSchema,
      /** Calendar periods of a GFS policy are taken in this time zone. */
      timeZone: z.string().min(1).max(64),
      /** Say what would be deleted, delete nothing. */
      dryRun: z.boolean(),
      /** Replaced databases kept by restores are dropped after this many days (0: never). */
      preRestoreMaxAgeDays: z.number().int().min(0).max(3_650),
      ...requester,
    }),
    result: z.object({
      dryRun: z.boolean(),
      deletedCount: z.number().int().nonnegative(),
      deleted: z.array(z.string()),
      /** keep-last's N (null under GFS). */
      keptLast: z.number().int().nullable(),
      kept: z.array(z.string()),
      /** Backups that a running restore or verify was reading, left for the next clean-up. */
      skipped: z.array(z.object({ id: z.string(), reason: z.string() })),
      droppedDatabases: z.array(z.string()),
      lock: lockTimes,
    }),
  },
  /**
   * A scheduled run of a discovery target (`database: "*"`): lists the server's databases and
   * queues the scheduled job once for each database it picks, as that database's target.
   */
  discover: {
    queue: queueNames.backups,
    destructive: false,
    retry: defaultRetry,
    notified: false,
    countsTargetSuccess: false,
    scheduledRunLine: (result: unknown): RunLine => ({
      fields: { result },
      message: 'scheduled discovery run queued its jobs',
    }),
    payload: z.object({
      job: z.enum(scheduleJobs),
      /** The payload each database's job gets, its target name filled in. */
      template: z.record(z.string(), z.unknown()),
      ...requester,
    }),
    result: z.object({
      job: z.string(),
      queued: z.array(z.object({ target: z.string(), jobId: z.string() })),
    }),
  },
  /**
   * A base backup of a server with point-in-time recovery on: `pg_basebackup` into every
   * destination of the server's archive, checked with `pg_verifybackup`.
   */
  basebackup: {
    queue: queueNames.backups,
    destructive: false,
    retry: defaultRetry,
    notified: false,
    countsTargetSuccess: true,
    scheduledRunLine: (result: { id?: string }): RunLine => ({
      fields: { baseBackupId: result.id },
      message: 'scheduled base backup completed',
    }),
    payload: z.object({
      server: z.string().regex(/^[a-z0-9_-]{1,63}$/),
      checkpoint: z.enum(['fast', 'spread']),
      /** Extract the backup into a scratch directory and run pg_verifybackup on it. */
      verify: z.boolean().default(true),
      label: labelSchema.nullable().default(null),
      type: z.enum(['manual', 'scheduled']),
      ...requester,
    }),
    result: baseBackupManifestSchema,
  },
  /**
   * Retention of a server's archive: base backups by keep-last or GFS, and every WAL file older
   * than what the oldest kept base backup needs, in every destination.
   */
  'pitr-cleanup': {
    queue: queueNames.maintenance,
    destructive: true,
    retry: defaultRetry,
    notified: false,
    countsTargetSuccess: true,
    scheduledRunLine: (result: {
      deletedBaseBackups?: string[];
      deletedSegments?: number;
    }): RunLine => ({
      fields: {
        deletedBaseBackups: result.deletedBaseBackups?.length,
        deletedSegments: result.deletedSegments,
      },
      message: 'scheduled archive clean-up completed',
    }),
    payload: z.object({
      server: z.string().regex(/^[a-z0-9_-]{1,63}$/),
      retention: retentionSchema,
      timeZone: z.string().min(1).max(64),
      dryRun: z.boolean(),
      ...requester,
    }),
    result: z.object({
      server: z.string(),
      dryRun: z.boolean(),
      kept: z.array(z.string()),
      deletedBaseBackups: z.array(z.string()),
      /** The oldest WAL segment kept; null when no base backup is kept (nothing is deleted). */
      keptFromSegment: z.string().nullable(),
      deletedSegments: z.number().int().nonnegative(),
      firstDeleted: z.string().nullable(),
      lastDeleted: z.string().nullable(),
      deletedBytes: z.number().int().nonnegative(),
      lock: lockTimes,
    }),
  },
  /**
   * One database of a server as it was at a point in time: its newest base backup that ends
   * before then, recovered with the archived WAL in a temporary instance of the worker's own,
   * dumped as a backup of the target (type `pitr`), and restored as any restore is (temporary
   * database, checks, swap, the old database kept).
   */
  'pitr-restore': {
    queue: queueNames.maintenance,
    destructive: true,
    retry: defaultRetry,
    notified: false,
    countsTargetSuccess: true,
    scheduledRunLine: null,
    payload: z.object({
      /** RFC 3339 with a time zone, or `latest`: all the WAL the archive holds. */
      pointInTime: z.union([z.iso.datetime({ offset: true }), z.literal('latest')]),
      /** The database to restore into (the target's own, or another one beside it). */
      target: databaseNameSchema,
      /** Keep the dump as a backup of the target (listed and restorable as any other). */
      keepDump: z.boolean().default(false),
      ...requester,
    }),
    result: z.object({
      pointInTime: z.string(),
      /** The last transaction the recovery replayed: the restored data is as of this time. */
      recoveredTo: z.iso.datetime().nullable(),
      baseBackupId: z.string(),
      database: z.string(),
      target: z.string(),
      walFilesFetched: z.number().int().nonnegative(),
      walBytesFetched: z.number().int().nonnegative(),
      /** The dump, when kept (keepDump); null when it was removed after the restore. */
      backupId: z.string().nullable(),
      previousDatabase: z.string().nullable(),
      rowCounts: z.record(z.string(), z.number().int().nonnegative()),
      phases: z.object({
        fetchMs: z.number().int().nonnegative(),
        recoveryMs: z.number().int().nonnegative(),
        dumpMs: z.number().int().nonnegative(),
        restoreMs: z.number().int().nonnegative(),
      }),
      downtimeMs: z.number().int().nonnegative(),
      durationMs: z.number().int().nonnegative(),
      lock: lockTimes,
    }),
  },
} as const;

export type JobName = keyof typeof jobCatalog;
export type JobPayload<N extends JobName> = z.infer<(typeof jobCatalog)[N]['payload']>;
/** A payload as it is queued: fields with a default (the target, `default`) may be left out. */
export type JobPayloadInput<N extends JobName> = z.input<(typeof jobCatalog)[N]['payload']>;
export type JobResult<N extends JobName> = z.infer<(typeof jobCatalog)[N]['result']>;

export const jobNames = Object.keys(jobCatalog) as JobName[];

export function isJobName(value: string): value is JobName {
  return Object.hasOwn(jobCatalog, value);
}

/**
 * Job ids name their job, `backup-<uuid>`, so a poll finds the right queue in one lookup and
 * ids never collide across queues.
 */
const jobIdPattern = new RegExp(
  `^(${jobNames.join('|')})-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`,
);

export function newJobId(name: JobName): string {
  return `${name}-${randomUUID()}`;
}

/**
 * The same id for the same (run, target): a discovery run that is retried queues each
 * database's job once, since BullMQ adds nothing for an id it already holds.
 */
export function derivedJobId(name: JobName, parentJobId: string, target: string): string {
  const hex = createHash('sha256').update(`${parentJobId}\n${target}`).digest('hex');
  return `${name}-${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** What the scheduler says at start about each schedule that is on, given its target's settings. */
export const scheduleStartLines: Record<
  ScheduleName,
  (target: { retention: Retention; verifyRestore: boolean }) => RunLine
> = {
  backup: () => ({ fields: {}, message: 'backup schedule: backups run at this cron' }),
  cleanup: ({ retention }) => ({
    fields: {
      retention,
      ...(retention.kind === 'keep-last' ? { keepLast: retention.keepLast } : {}),
    },
    message:
      retention.kind === 'keep-last'
        ? `cleanup schedule: keeps the last ${retention.keepLast} backups`
        : 'cleanup schedule: keeps backups by GFS policy',
  }),
  verify: ({ verifyRestore }) => ({
    fields: { restore: verifyRestore },
    message: 'verify schedule: verifies the newest backup',
  }),
};

export function isScheduleName(value: string): value is ScheduleName {
  return Object.hasOwn(scheduleJobs, value);
}

/**
 * `schedule-<name>` for the target `default` (the ids schedules had before targets), and
 * `schedule-<name>.<target>` for every other target.
 */
export function schedulerId(name: ScheduleName, target = 'default'): string {
  return target === 'default' ? `schedule-${name}` : `schedule-${name}.${target}`;
}

/** The scheduler of a discovery target: its runs are `discover` jobs. */
export function discoverySchedulerId(name: ScheduleName, target: string): string {
  return `discover-${name}.${target}`;
}

const scheduledJobIdPattern = new RegExp(
  `^repeat:schedule-(${scheduleNames.join('|')})(?:\\.[a-z0-9_-]{1,63})?:[0-9]{1,16}$`,
);
const discoveryJobIdPattern = new RegExp(
  `^repeat:discover-(${scheduleNames.join('|')})\\.[a-z0-9_-]{1,63}:[0-9]{1,16}$`,
);

/** A server's archive schedules: `pitr-basebackup.<server>`, `pitr-cleanup.<server>`. */
export const pitrScheduleJobs = { basebackup: 'basebackup', cleanup: 'pitr-cleanup' } as const;
export type PitrScheduleName = keyof typeof pitrScheduleJobs;
/** How logs name them. */
export const pitrScheduleLabels: Record<PitrScheduleName, string> = {
  basebackup: 'base backup',
  cleanup: 'archive clean-up',
};
export const pitrScheduleNameSchema = z.enum(
  Object.keys(pitrScheduleJobs) as [PitrScheduleName, ...PitrScheduleName[]],
);

export function pitrSchedulerId(name: PitrScheduleName, server: string): string {
  return `pitr-${name}.${server}`;
}

const pitrJobIdPattern = /^repeat:pitr-(basebackup|cleanup)\.[a-z0-9_-]{1,63}:[0-9]{1,16}$/;

export function jobNameOfId(jobId: string): JobName | undefined {
  const match = jobIdPattern.exec(jobId);
  const name = match?.[1];
  if (name !== undefined && isJobName(name)) return name;
  const pitr = pitrJobIdPattern.exec(jobId)?.[1];
  if (pitr !== undefined) return pitrScheduleJobs[pitr as PitrScheduleName];
  if (discoveryJobIdPattern.test(jobId)) return 'discover';
  const scheduled = scheduledJobIdPattern.exec(jobId)?.[1];
  return scheduled !== undefined && isScheduleName(scheduled) ? scheduleJobs[scheduled] : undefined;
}

/** What a job reports while it runs; shown to whoever polls the job. */
export const jobProgressSchema = z.object({
  phase: z.string(),
  percent: z.number().min(0).max(100).nullable(),
  bytesRead: z.number().int().nonnegative().optional(),
  bytesWritten: z.number().int().nonnegative().optional(),
  itemsDone: z.number().int().nonnegative().optional(),
  itemsTotal: z.number().int().nonnegative().optional(),
  /** While a job waits for a cap: what it waits for (`server:<name>`, `destructive`). */
  waitingFor: z.string().optional(),
  /** A backup: ms from the job's start on a worker to the first byte pg_dump wrote. */
  firstByteMs: z.number().int().nonnegative().optional(),
});
export type JobProgress = z.infer<typeof jobProgressSchema>;
