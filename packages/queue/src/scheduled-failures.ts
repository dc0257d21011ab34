import {
  decodeJobError,
  jobCatalog,
  type ScheduleName,
  scheduleJobs,
  schedulerId,
} from '@pgkeep/core';
import type { PgkeepQueues } from './queues.js';

export interface ScheduledRunFailure {
  jobId: string;
  /** When the run was due, from its id. */
  dueAt: string;
  failedAt: string | null;
  error: { code: string; message: string };
}

/**
 * The newest failed run of a schedule (`repeat:schedule-<name>:<time>`), among the newest
 * `scan` failed jobs of its queue. A run still waiting for a retry has not failed yet; a run
 * older than the `scan` newest failures is not seen (the failed list is ordered by the time
 * each job failed).
 */
export async function newestScheduledFailure(
  queues: PgkeepQueues,
  name: ScheduleName,
  scan = 200,
): Promise<ScheduledRunFailure | null> {
  const queue = queues[jobCatalog[scheduleJobs[name]].queue];
  const runPrefix = `repeat:${schedulerId(name)}:`;
  // A run's id ends with the time it was due; BullMQ's timestamp is when it was queued.
  const dueTime = (job: { id?: string | undefined; timestamp: number }) => {
    const due = Number(job.id?.slice(runPrefix.length));
    return Number.isSafeInteger(due) && due > 0 ? due : job.timestamp;
  };
  const failed = await queue.getJobs(['failed'], 0, scan - 1);
  let newest: (typeof failed)[number] | undefined;
  for (const job of failed) {
    if (!job?.id?.startsWith(runPrefix)) continue;
    if (!newest || dueTime(job) > dueTime(newest)) newest = job;
  }
  if (!newest?.id) return null;
  return {
    jobId: newest.id,
    dueAt: new Date(dueTime(newest)).toISOString(),
    failedAt: newest.finishedOn ? new Date(newest.finishedOn).toISOString() : null,
    error: decodeJobError(newest.failedReason ?? ''),
  };
}
