import {
  AppError,
  encodeJobError,
  isJobName,
  type JobName,
  type JobProgress,
  jobCatalog,
  type Logger,
  toAppError,
} from '@pgkeep/core';
import {
  cleanupBackups,
  deleteBackup,
  type EngineContext,
  type RunContext,
  runBackup,
  runRestore,
  runVerify,
} from '@pgkeep/engine';
import { type Job, UnrecoverableError } from 'bullmq';

const handlers: {
  [N in JobName]: (engine: EngineContext, payload: never, run: RunContext) => Promise<unknown>;
} = {
  backup: runBackup,
  verify: runVerify,
  restore: runRestore,
  delete: deleteBackup,
  cleanup: cleanupBackups,
};

/**
 * At most one progress write to Redis every 500 ms, plus every phase change; `flush` writes
 * the last report held back, so a finished job never shows a stale percentage.
 */
function throttledProgress(job: Job, logger: Logger) {
  let lastAt = 0;
  let lastPhase = '';
  let held: JobProgress | undefined;
  const write = (progress: JobProgress) =>
    job.updateProgress(progress).catch((error: unknown) => {
      logger.warn({ err: error }, 'could not record job progress');
    });
  return {
    report: (progress: JobProgress) => {
      const now = Date.now();
      if (progress.phase === lastPhase && now - lastAt < 500) {
        held = progress;
        return;
      }
      held = undefined;
      lastAt = now;
      lastPhase = progress.phase;
      void write(progress);
    },
    flush: async () => {
      if (held) await write(held);
      held = undefined;
    },
  };
}

/** Who asked to cancel a job, if anyone (see @pgkeep/queue cancellation). */
export type CancelLookup = (jobId: string) => Promise<string | null>;

/**
 * Parses the payload with the catalog schema, runs the engine with the job's AbortSignal and
 * a progress callback, and turns failures into job errors: `[CODE] message`, unrecoverable
 * unless the error says a retry may help. A cancelled job fails as JOB_CANCELLED, not retried.
 */
export function createProcessor(engine: EngineContext, cancelledBy: CancelLookup) {
  return async (job: Job, _token?: string, signal?: AbortSignal): Promise<unknown> => {
    const logger = engine.logger.child({
      jobId: job.id,
      job: job.name,
      attempt: job.attemptsMade + 1,
    });
    const name = job.name;
    const jobId = job.id ?? '';
    try {
      const before = await cancelledBy(jobId);
      if (before) throw new AppError('JOB_CANCELLED', `cancelled by ${before} before it started`);
      if (!isJobName(name)) throw new AppError('VALIDATION_ERROR', `unknown job name ${name}`);
      const parsed = jobCatalog[name].payload.safeParse(job.data);
      if (!parsed.success) {
        throw new AppError(
          'VALIDATION_ERROR',
          `invalid ${name} payload: ${parsed.error.issues[0]?.message}`,
        );
      }
      logger.info(
        { requestedBy: (parsed.data as { requestedBy: string }).requestedBy },
        'job started',
      );
      const progress = throttledProgress(job, logger);
      const result = await handlers[name](engine, parsed.data as never, {
        jobId: job.id ?? null,
        signal,
        onProgress: progress.report,
        logger,
      });
      await progress.flush();
      logger.info('job completed');
      return jobCatalog[name].result.parse(result);
    } catch (error) {
      let appError = toAppError(error);
      if (signal?.aborted && appError.code !== 'JOB_CANCELLED') {
        const by = await cancelledBy(jobId).catch(() => null);
        if (by) appError = new AppError('JOB_CANCELLED', `cancelled by ${by}`);
      }
      const lastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      logger[appError.retryable && !lastAttempt ? 'warn' : 'error'](
        { code: appError.code, err: error, retryable: appError.retryable },
        'job failed',
      );
      const message = encodeJobError(appError);
      throw appError.retryable ? new Error(message) : new UnrecoverableError(message);
    }
  };
}
