import type { Job } from 'bullmq';

/**
 * Whether a failed attempt ends its job for good, BullMQ's own rule: no retry follows an
 * UnrecoverableError (a non-retryable error, a cancel, a job that stalled too often), nor the
 * last of the job's attempts. `failedAttempts` counts the attempt that failed.
 */
export function isFinalFailure(
  failedAttempts: number,
  attempts: number | undefined,
  unrecoverable: boolean,
): boolean {
  return unrecoverable || failedAttempts >= (attempts ?? 1);
}

/** The rule in BullMQ's `failed` event, which fires after BullMQ has counted the attempt. */
export function failedForGood(
  job: Pick<Job, 'attemptsMade' | 'opts'>,
  error: Pick<Error, 'name'>,
): boolean {
  return isFinalFailure(job.attemptsMade, job.opts.attempts, error.name === 'UnrecoverableError');
}
