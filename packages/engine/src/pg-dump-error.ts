import { AppError } from '@pgkeep/core';
import { ChildProcessError } from '@pgkeep/pg';

/** pg_dump's failure as the job's error (of either dump path). */
export function pgDumpError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  if (error instanceof ChildProcessError) {
    // A lost connection is worth another try; a refused table or permission is not.
    const transient = /could not connect|connection to server|server closed|timeout|terminat/i;
    return new AppError('PG_DUMP_FAILED', error.message, {
      retryable: error.signalName === null && transient.test(error.stderrTail),
      cause: error,
    });
  }
  return new AppError('PG_DUMP_FAILED', (error as Error).message, {
    retryable: true,
    cause: error,
  });
}
