import type { FinishedJob, JobNotifications } from '@pgkeep/notify';
import { failedForGood } from '@pgkeep/queue';
import type { Job, Worker } from 'bullmq';

/** The database of a target, by its name (undefined: no such target any more). */
export type DatabaseOfTarget = (
  targetName: string,
) => { database: { database: string } } | undefined;

function finishedJob(
  job: Job,
  end: Pick<FinishedJob, 'status' | 'result' | 'failedReason'>,
  databaseOf: DatabaseOfTarget,
): FinishedJob {
  const targetName = (job.data as { targetName?: unknown } | undefined)?.targetName;
  const target = typeof targetName === 'string' ? targetName : 'default';
  const database = databaseOf(target)?.database.database;
  return {
    ...end,
    name: job.name,
    id: job.id ?? '',
    payload: (job.data ?? {}) as Record<string, unknown>,
    attemptsMade: job.attemptsMade,
    queuedAt: job.timestamp,
    startedAt: job.processedOn,
    finishedAt: job.finishedOn ?? Date.now(),
    target,
    ...(database !== undefined ? { database } : {}),
  };
}

/**
 * Announces each job this worker ends for good. The events fire after BullMQ has recorded the
 * outcome, and `jobFinished` returns at once: the job is never held up by a notification.
 */
export function notifyWhenFinished(
  worker: Worker,
  notifications: JobNotifications,
  databaseOf: DatabaseOfTarget,
): void {
  if (!notifications.enabled) return;
  worker.on('completed', (job, result) => {
    notifications.jobFinished(finishedJob(job, { status: 'completed', result }, databaseOf));
  });
  worker.on('failed', (job, error) => {
    if (!job || !failedForGood(job, error)) return;
    notifications.jobFinished(
      finishedJob(
        job,
        { status: 'failed', failedReason: job.failedReason ?? error.message },
        databaseOf,
      ),
    );
  });
}
