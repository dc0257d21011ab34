import { decodeJobError, isJobName, type JobName, jobCatalog, type Logger } from '@pgkeep/core';
import {
  countTargetOutcome,
  finalOutcomeOfFailure,
  type JobOutcome,
  recordJobOutcome,
  recordTargetFailure,
  recordTargetSuccess,
} from '@pgkeep/queue';
import type { Worker } from 'bullmq';
import type { Redis } from 'ioredis';

/**
 * Counts each job's final outcome in Redis for the API's GET /metrics. BullMQ's events are the
 * one place that sees every ending, including a job failed for stalling too often, which never
 * reaches the processor; they fire once the job's state is written, so a counter never runs
 * ahead of the job it counts. A retry that is still to come is not an outcome.
 */
export function countJobOutcomes(
  worker: Worker,
  redis: Redis,
  prefix: string,
  logger: Logger,
): void {
  const record = (name: JobName, outcome: JobOutcome, result?: unknown) => {
    recordJobOutcome(redis, prefix, name, outcome, result).catch((error: unknown) => {
      logger.warn({ err: error, job: name, outcome }, 'job metrics not recorded');
    });
  };
  const targetOf = (job: { data?: unknown }) => {
    const name = (job.data as { targetName?: unknown } | undefined)?.targetName;
    return typeof name === 'string' ? name : 'default';
  };
  const note = (work: Promise<void>) =>
    work.catch((error: unknown) => logger.warn({ err: error }, 'target status not recorded'));
  worker.on('completed', (job, result) => {
    if (!isJobName(job.name)) return;
    record(job.name, 'completed', result);
    if (!jobCatalog[job.name].countsTargetSuccess) return;
    void note(recordTargetSuccess(redis, prefix, targetOf(job), job.name));
    void note(countTargetOutcome(redis, prefix, targetOf(job), job.name, 'completed'));
  });
  worker.on('failed', (job, error) => {
    if (!job || !isJobName(job.name)) return;
    const outcome = finalOutcomeOfFailure(job, error);
    if (!outcome) return;
    record(job.name, outcome);
    void note(countTargetOutcome(redis, prefix, targetOf(job), job.name, outcome));
    const { code, message } = decodeJobError(job.failedReason ?? error.message);
    void note(
      recordTargetFailure(redis, prefix, targetOf(job), {
        job: job.name,
        code,
        message: message.slice(0, 500),
        at: new Date(job.finishedOn ?? Date.now()).toISOString(),
      }),
    );
  });
}
