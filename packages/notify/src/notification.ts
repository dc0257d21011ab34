import { decodeJobError, type JobName, jobCatalog, jobNames } from '@pgkeep/core';

/** Jobs whose outcome is announced (`notified` in the job catalog). */
export type NotifiedJob = {
  [N in JobName]: (typeof jobCatalog)[N]['notified'] extends true ? N : never;
}[JobName];
export const notifiedJobs = jobNames.filter(
  (name): name is NotifiedJob => jobCatalog[name].notified,
);

export type NotifyOn = 'failure' | 'always';

/** What the worker knows about a job that has ended for good (no retry to come). */
export interface FinishedJob {
  name: string;
  id: string;
  status: 'completed' | 'failed';
  /** The job's payload as queued (`requestedBy`, `requestedAt`, `backupId`, `target`, …). */
  payload: Record<string, unknown>;
  /** A completed job's result (from the job catalog). */
  result?: unknown;
  /** A failed job's error, encoded `[CODE] message`. */
  failedReason?: string;
  attemptsMade: number;
  /** Epoch milliseconds. */
  queuedAt?: number;
  startedAt?: number;
  finishedAt?: number;
  /** The database the worker backs up, when the job itself does not name one. */
  database?: string;
  /** The pgkeep target the job was for (`default` when the job names none). */
  target?: string;
}

/**
 * The webhook's JSON body. `text` is Slack-compatible (an incoming webhook shows it as is);
 * everything else is there for a program to read.
 */
export interface JobNotification {
  text: string;
  /**
   * `backup.failed`, `backup.succeeded`, `restore.failed`, `verify.failed`, …, and
   * `backup.incomplete`: completed, but an optional destination did not get its copy.
   */
  event: `${NotifiedJob}.${'succeeded' | 'failed'}` | 'backup.incomplete';
  outcome: 'success' | 'failure' | 'warning';
  jobName: NotifiedJob;
  jobId: string;
  /** A run started by a schedule (`repeat:schedule-…` job ids). */
  scheduled: boolean;
  attemptsMade: number;
  backupId: string | null;
  filename: string | null;
  /** The backed-up database, or a restore's target. */
  database: string | null;
  /** The pgkeep target: `default`, a configured target's name, or `<server>/<database>`. */
  target: string;
  error: { code: string; message: string } | null;
  requestedBy: string | null;
  requestedAt: string | null;
  startedAt: string | null;
  finishedAt: string;
}

function isNotifiedJob(name: string): name is NotifiedJob {
  return (notifiedJobs as readonly string[]).includes(name);
}

const asRecord = (value: unknown): Record<string, unknown> =>
  typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
const stringOrNull = (value: unknown): string | null =>
  typeof value === 'string' && value !== '' ? value : null;
const isoOrNull = (epochMs: number | undefined): string | null =>
  typeof epochMs === 'number' && Number.isFinite(epochMs) ? new Date(epochMs).toISOString() : null;

/** A completed backup that an optional destination did not get a copy of. */
function missingCopies(result: Record<string, unknown>): { code: string; message: string } | null {
  const failed = Array.isArray(result.failedCopies) ? result.failedCopies.map(asRecord) : [];
  if (failed.length === 0) return null;
  return {
    code: 'COPY_FAILED',
    message: failed
      .map((copy) => `no copy in ${String(copy.destination)}: ${String(copy.message)}`)
      .join('; '),
  };
}

/**
 * The notification for a finished job, or null when the job is not one that is announced or
 * `notifyOn` leaves it out (a success under `failure`).
 */
export function buildNotification(job: FinishedJob, notifyOn: NotifyOn): JobNotification | null {
  if (!isNotifiedJob(job.name)) return null;
  const payload = job.payload;
  const result = asRecord(job.result);
  const warning =
    job.status === 'completed' && job.name === 'backup' ? missingCopies(result) : null;
  // A verify that found its backup bad is a failed job (VERIFY_FAILED, its message naming the
  // failed checks); the details stay in the job, the message says enough.
  const failure = job.status === 'failed' ? decodeJobError(job.failedReason ?? '') : null;
  const error = failure ? { code: failure.code, message: failure.message } : warning;
  const outcome = warning ? 'warning' : error ? 'failure' : 'success';
  // A warning is sent like a failure: someone must see that a copy is missing.
  if (outcome === 'success' && notifyOn !== 'always') return null;

  // A failed verify of `latest` names the backup it read in its error's details.
  const backupId =
    stringOrNull(result.id) ??
    stringOrNull(result.backupId) ??
    stringOrNull(failure?.details?.backupId) ??
    stringOrNull(payload.backupId);
  const database =
    job.name === 'restore'
      ? (stringOrNull(result.target) ?? stringOrNull(payload.target))
      : (stringOrNull(result.database) ?? job.database ?? null);
  const notification: Omit<JobNotification, 'text'> = {
    event:
      outcome === 'warning'
        ? 'backup.incomplete'
        : `${job.name}.${outcome === 'success' ? 'succeeded' : 'failed'}`,
    outcome,
    jobName: job.name,
    jobId: job.id,
    scheduled: job.id.startsWith('repeat:'),
    attemptsMade: job.attemptsMade,
    backupId,
    filename: stringOrNull(result.filename),
    database,
    target: stringOrNull(payload.targetName) ?? job.target ?? 'default',
    error,
    requestedBy: stringOrNull(payload.requestedBy),
    requestedAt: stringOrNull(payload.requestedAt) ?? isoOrNull(job.queuedAt),
    startedAt: isoOrNull(job.startedAt),
    finishedAt: isoOrNull(job.finishedAt) ?? new Date().toISOString(),
  };
  return { text: slackText(notification, result), ...notification };
}

/** Slack reads `&`, `<` and `>` as markup (links, mentions): an error message must not. */
export function escapeSlack(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/** The headline: what happened to which job, without the details. */
function headline(notification: Omit<JobNotification, 'text'>): string {
  const verb =
    notification.outcome === 'success'
      ? 'succeeded'
      : notification.outcome === 'warning'
        ? 'completed without every copy'
        : 'failed';
  const what = notification.scheduled ? `scheduled ${notification.jobName}` : notification.jobName;
  const where = notification.database ? ` on ${notification.database}` : '';
  const target = notification.target === 'default' ? '' : ` (target ${notification.target})`;
  return `pgkeep ${what} ${verb}${where}${target}`;
}

function slackText(
  notification: Omit<JobNotification, 'text'>,
  result: Record<string, unknown>,
): string {
  const icon =
    notification.outcome === 'success'
      ? ':white_check_mark:'
      : notification.outcome === 'warning'
        ? ':warning:'
        : ':x:';
  let detail: string;
  if (notification.error) {
    detail = `[${notification.error.code}] ${notification.error.message}`;
  } else if (notification.filename) {
    const size = typeof result.size === 'number' ? `, ${formatBytes(result.size)}` : '';
    detail = `${notification.filename}${size}`;
  } else {
    detail = notification.backupId ? `backup ${notification.backupId}` : 'done';
  }
  const context = [
    `job ${notification.jobId}`,
    notification.requestedBy ? `requested by ${notification.requestedBy}` : null,
    `attempt ${notification.attemptsMade}`,
  ].filter(Boolean);
  return escapeSlack(`${icon} ${headline(notification)}: ${detail} (${context.join(', ')})`);
}

/** One line, no line breaks: SMTP header folding is not something a job error should decide. */
export function emailSubject(notification: JobNotification): string {
  const subject = notification.error
    ? `[pgkeep] ${notification.jobName} ${notification.outcome === 'warning' ? 'incomplete' : 'failed'}: ${notification.error.code}`
    : `[pgkeep] ${notification.jobName} succeeded${notification.backupId ? `: ${notification.backupId}` : ''}`;
  return subject.replace(/[\r\n]+/g, ' ');
}

export function emailText(notification: JobNotification): string {
  const rows: [string, string | null][] = [
    ['Event', notification.event],
    ['Error code', notification.error?.code ?? null],
    ['Error', notification.error?.message ?? null],
    ['Job', `${notification.jobName} ${notification.jobId}`],
    ['Attempts', String(notification.attemptsMade)],
    ['Backup', notification.backupId],
    ['File', notification.filename],
    ['Target', notification.target],
    ['Database', notification.database],
    ['Requested by', notification.requestedBy],
    ['Requested at', notification.requestedAt],
    ['Started at', notification.startedAt],
    ['Finished at', notification.finishedAt],
  ];
  const width = Math.max(...rows.map(([label]) => label.length)) + 2;
  const lines = rows
    .filter((row): row is [string, string] => row[1] !== null)
    .map(([label, value]) => `${`${label}:`.padEnd(width)}${value}`);
  return `${headline(notification)}.\n\n${lines.join('\n')}\n`;
}
