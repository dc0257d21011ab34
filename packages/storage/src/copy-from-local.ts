import { setTimeout as delay } from 'node:timers/promises';
import { AppError, type Logger, toAppError } from '@pgkeep/core';
import type { Destination, StagedArtifact } from './destination.js';
import type { LocalStorage } from './local-storage.js';

interface RetryOptions {
  signal: AbortSignal | undefined;
  /** Tries in all, the n-th after a pause of n × retryDelayMs (the first too, when above 0). */
  attempts: number;
  retryDelayMs: number;
  logger: Logger;
}

/** A failed copy written again from the committed local artifact, with a pause between tries. */
export async function copyFromLocal(
  local: LocalStorage,
  destination: Destination,
  filename: string,
  expected: { size: number; sha256: string },
  { signal, attempts, retryDelayMs, logger }: RetryOptions,
): Promise<{ staged: StagedArtifact } | { error: AppError }> {
  let last: AppError = new AppError('COPY_FAILED', 'not attempted');
  for (let attempt = 1; attempt <= attempts; attempt += 1) {
    if (attempt > 1 || retryDelayMs > 0) {
      await delay(retryDelayMs * attempt, undefined, { signal });
    }
    try {
      const staged = await destination.writeArtifact(filename, await local.openArtifact(filename), {
        signal,
        sizeHint: expected.size,
      });
      if (staged.sha256 !== expected.sha256 || staged.size !== expected.size) {
        await staged.discard();
        throw new AppError(
          'COPY_FAILED',
          `the copy to ${destination.name} differs from the local one`,
        );
      }
      await staged.commit();
      logger.info(
        { destination: destination.name, attempt },
        'copy written again from the local copy',
      );
      return { staged };
    } catch (error) {
      if (signal?.aborted) throw error;
      last = toAppError(error);
      logger.warn(
        { destination: destination.name, attempt, code: last.code, err: last.message },
        'copy failed',
      );
    }
  }
  return { error: last };
}
