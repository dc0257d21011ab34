import {
  AppError,
  encodeJobError,
  isJobName,
  type JobName,
  type JobPayload,
  type JobProgress,
  type JobResult,
  jobCatalog,
  type Logger,
  toAppError,
} from '@pgkeep/core';
import {
  cleanupArchive,
  cleanupBackups,
  deleteBackup,
  type EngineContext,
  type PitrContext,
  type RunContext,
  runBackup,
  runBaseBackup,
  runPitrRestore,
  runRestore,
  runVerify,
} from '@pgkeep/engine';
import { isFinalFailure } from '@pgkeep/queue';
import { type Job, UnrecoverableError } from 'bullmq';

/** Jobs of one target's engine; `discover` fans out, the PITR jobs act on a whole server. */
type EngineJob = Exclude<JobName, 'discover' | PitrJob | 'pitr-restore'>;
type PitrJob = 'basebackup' | 'pitr-cleanup';

const pitrHandlers: {
  [N in PitrJob]: (context: PitrContext, payload: never, run: RunContext) => Promise<unknown>;
} = {
  basebackup: runBaseBackup,
  'pitr-cleanup': cleanupArchive,
};

const isPitrJob = (name: JobName): name is PitrJob => Object.hasOwn(pitrHandlers, name);

const handlers: {
  [N in EngineJob]: (engine: EngineContext, payload: never, run: RunContext) => Promise<unknown>;
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

/** The panel's lines for scheduled runs: what a scheduled backup, clean-up or verify did. */
function logScheduledOutcome(logger: Logger, name: JobName, result: unknown): void {
  const line = jobCatalog[name].scheduledRunLine?.(result as never);
  if (line) logger.info(line.fields, line.message);
}

/** What the processor asks of Redis besides the job itself (see @pgkeep/queue cancellation). */
export interface JobLedger {
  /** Who asked to cancel a job, if anyone. */
  cancelledBy: (jobId: string) => Promise<string | null>;
  earlierResult: (jobId: string) => Promise<unknown>;
  recordResult: (jobId: string, result: unknown) => Promise<void>;
  /** A verify's verdict on its backup, kept by backup id. */
  /** A verify's verdict, kept per target for health detail. */
  recordVerification: (
    jobId: string,
    result: JobResult<'verify'>,
    targetName: string,
  ) => Promise<void>;
}

/** How a job finds its target's engine, and how a discovery run queues its databases' jobs. */
export interface TargetRouting {
  logger: Logger;
  /** The engine for a target by name; TARGET_NOT_FOUND when no target has it. */
  engineFor: (targetName: string) => Promise<EngineContext>;
  fanOut: (
    payload: JobPayload<'discover'>,
    parentJobId: string,
    logger: Logger,
  ) => Promise<JobResult<'discover'>>;
  /** A server's archive and what its jobs need; PITR_NOT_ENABLED when the server has none. */
  pitrFor: (server: string) => Promise<PitrContext>;
}

/**
 * Parses the payload with the catalog schema, runs the engine of the job's target with the
 * job's AbortSignal and a progress callback, and turns failures into job errors: `[CODE]
 * message`, unrecoverable unless the error says a retry may help. A cancelled job fails as
 * JOB_CANCELLED, not retried.
 */
export function createProcessor(routing: TargetRouting, ledger: JobLedger) {
  const { cancelledBy } = ledger;
  return async (job: Job, _token?: string, signal?: AbortSignal): Promise<unknown> => {
    // Every line of a job names its target: one taken from the payload as it came, before
    // validation, so that even a refused payload's line says which target it was for.
    const rawTarget = (job.data as { targetName?: unknown } | undefined)?.targetName;
    const logger = routing.logger.child({
      jobId: job.id,
      job: job.name,
      target: typeof rawTarget === 'string' ? rawTarget.slice(0, 127) : 'default',
      attempt: job.attemptsMade + 1,
    });
    const name = job.name;
    const jobId = job.id ?? '';
    const startedAt = Date.now();
    try {
      const before = await cancelledBy(jobId);
      if (before) throw new AppError('JOB_CANCELLED', `cancelled by ${before} before it started`);
      if (!isJobName(name)) throw new AppError('VALIDATION_ERROR', `unknown job name ${name}`);
      // A scheduled run's template carries no time of its own: the run's is the request's.
      const data = { requestedAt: new Date(job.timestamp).toISOString(), ...job.data };
      const parsed = jobCatalog[name].payload.safeParse(data);
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
      const targetName = (parsed.data as { targetName: string }).targetName;
      const run: RunContext = {
        jobId: job.id ?? null,
        signal,
        onProgress: progress.report,
        logger,
        earlierResult: () => ledger.earlierResult(jobId),
        startedAt,
        // BullMQ counts every run it starts, a re-run after a stall included
        // (attemptsStarted); attemptsMade counts only attempts that failed.
        rerun: job.attemptsStarted > 1 || job.attemptsMade > 0,
        recordVerification: (verdict) => ledger.recordVerification(jobId, verdict, targetName),
      };
      let result: unknown;
      if (name === 'discover') {
        result = await routing.fanOut(parsed.data as JobPayload<'discover'>, jobId, logger);
      } else if (name === 'pitr-restore') {
        // A target's job that reads its server's archive.
        const engine = await routing.engineFor(targetName);
        const pitr = await routing.pitrFor(engine.targetInfo.server);
        result = await runPitrRestore(engine, pitr, parsed.data as JobPayload<'pitr-restore'>, run);
      } else if (isPitrJob(name)) {
        const server = (parsed.data as { server: string }).server;
        result = await pitrHandlers[name](await routing.pitrFor(server), parsed.data as never, run);
      } else {
        result = await handlers[name](
          await routing.engineFor(targetName),
          parsed.data as never,
          run,
        );
      }
      await progress.flush();
      logger.info('job completed');
      const parsedResult = jobCatalog[name].result.parse(result);
      await ledger.recordResult(jobId, parsedResult).catch((error: unknown) => {
        logger.warn({ err: error }, 'could not record the job result');
      });
      if (jobId.startsWith('repeat:')) logScheduledOutcome(logger, name, parsedResult);
      return parsedResult;
    } catch (error) {
      let appError = toAppError(error);
      if (signal?.aborted && appError.code !== 'JOB_CANCELLED') {
        const by = await cancelledBy(jobId).catch(() => null);
        if (by) appError = new AppError('JOB_CANCELLED', `cancelled by ${by}`);
      }
      // attemptsMade counts the attempts that failed before this one.
      const final = isFinalFailure(job.attemptsMade + 1, job.opts.attempts, !appError.retryable);
      logger[final ? 'error' : 'warn'](
        { code: appError.code, err: error, retryable: appError.retryable, final },
        jobId.startsWith('repeat:') ? `scheduled ${name} failed` : 'job failed',
      );
      const message = encodeJobError(appError);
      throw appError.retryable ? new Error(message) : new UnrecoverableError(message);
    }
  };
}
