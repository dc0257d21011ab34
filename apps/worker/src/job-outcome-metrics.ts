import { isJobName, type JobName, type Logger } from '@pgkeep/core';
import { finalOutcomeOfFailure, type JobOutcome, recordJobOutcome } from '@pgkeep/queue';
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
  worker.on('completed', (job, result) => {
    if (isJobName(job.name)) record(job.name, 'completed', result);
  });
  worker.on('failed', (job, error) => {
    if (!job || !isJobName(job.name)) return;
    const outcome = finalOutcomeOfFailure(job, error);
    if (outcome) record(job.name, outcome);
  });
}
