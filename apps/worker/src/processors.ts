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
} from '@pgkeep/engine';
import { type Job, UnrecoverableError } from 'bullmq';

const handlers: {
  [N in JobName]: (engine: EngineContext, payload: never, run: RunContext) => Promise<unknown>;
} = {
  backup: runBackup,
  delete: deleteBackup,
  cleanup: cleanupBackups,
};

/** At most one progress write to Redis every 500 ms, plus every phase change. */
function throttledProgress(job: Job, logger: Logger) {
  let lastAt = 0;
  let lastPhase = '';
  return (progress: JobProgress) => {
    const now = Date.now();
    if (progress.phase === lastPhase && now - lastAt < 500) return;
    lastAt = now;
    lastPhase = progress.phase;
    job.updateProgress(progress).catch((error: unknown) => {
      logger.warn({ err: error }, 'could not record job progress');
    });
  };
}

/**
 * Parses the payload with the catalog schema, runs the engine with the job's AbortSignal and
 * a progress callback, and turns failures into job errors: `[CODE] message`, unrecoverable
 * unless the error says a retry may help.
 */
export function createProcessor(engine: EngineContext) {
  return async (job: Job, _token?: string, signal?: AbortSignal): Promise<unknown> => {
    const logger = engine.logger.child({
      jobId: job.id,
      job: job.name,
      attempt: job.attemptsMade + 1,
    });
    const name = job.name;
    try {
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
      const result = await handlers[name](engine, parsed.data as never, {
        jobId: job.id ?? null,
        signal,
        onProgress: throttledProgress(job, logger),
        logger,
      });
      logger.info('job completed');
      return jobCatalog[name].result.parse(result);
    } catch (error) {
      const appError = toAppError(error);
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
