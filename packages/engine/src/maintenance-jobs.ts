import { AppError, type JobPayload, type JobResult } from '@pgkeep/core';
import { type HeldLock, lockResources } from '@pgkeep/pg';
import type { EngineContext, RunContext } from './engine-context.js';
import { selectByKeepLast } from './keep-last.js';

/**
 * Runs `work` while holding the cluster-wide exclusive lock for destructive jobs, so that no two
 * of them (delete, cleanup, restore) ever overlap on any worker or host.
 */
async function withDestructiveLock<T>(
  engine: EngineContext,
  run: RunContext,
  work: (lock: HeldLock) => Promise<T>,
): Promise<{ value: T; lock: { waitedMs: number; acquiredAt: string; releasedAt: string } }> {
  run.onProgress?.({ phase: 'waiting-for-lock', percent: null });
  const lock = await engine.locks.acquire(lockResources.destructive, 'exclusive', {
    timeoutMs: engine.config.LOCK_TIMEOUT_MS,
    signal: run.signal,
  });
  let value: T;
  let releasedAt: Date;
  try {
    value = await work(lock);
  } finally {
    releasedAt = await lock.release();
  }
  run.onProgress?.({ phase: 'completed', percent: 100 });
  return {
    value,
    lock: {
      waitedMs: lock.waitedMs,
      acquiredAt: lock.acquiredAt.toISOString(),
      releasedAt: releasedAt.toISOString(),
    },
  };
}

function throwIfStopped(run: RunContext, lock: HeldLock): void {
  if (lock.lost.aborted) throw lock.lost.reason;
  if (run.signal?.aborted) {
    throw new AppError('JOB_ABORTED', 'the job was cancelled', { retryable: true });
  }
}

export async function deleteBackup(
  engine: EngineContext,
  payload: JobPayload<'delete'>,
  run: RunContext,
): Promise<JobResult<'delete'>> {
  const { value, lock } = await withDestructiveLock(engine, run, async (held) => {
    run.onProgress?.({ phase: 'deleting', percent: null });
    const manifest = await engine.storage.getManifest(payload.backupId);
    if (!manifest) throw new AppError('BACKUP_NOT_FOUND', `backup ${payload.backupId} not found`);
    throwIfStopped(run, held);
    await engine.storage.deleteBackup(manifest);
    run.logger.info({ backupId: manifest.id, filename: manifest.filename }, 'backup deleted');
    return [manifest.id];
  });
  return { deletedCount: value.length, deleted: value, lock };
}

export async function cleanupBackups(
  engine: EngineContext,
  payload: JobPayload<'cleanup'>,
  run: RunContext,
): Promise<JobResult<'cleanup'>> {
  const { value, lock } = await withDestructiveLock(engine, run, async (held) => {
    run.onProgress?.({ phase: 'cleaning', percent: 0 });
    const { manifests } = await engine.storage.listManifests();
    const { keep, remove } = selectByKeepLast(manifests, payload.keepLast);
    const deleted: string[] = [];
    for (const manifest of remove) {
      throwIfStopped(run, held);
      await engine.storage.deleteBackup(manifest);
      deleted.push(manifest.id);
      run.onProgress?.({
        phase: 'cleaning',
        percent: Math.floor((deleted.length / remove.length) * 100),
      });
    }
    run.logger.info(
      { deletedCount: deleted.length, keptLast: payload.keepLast },
      'cleanup completed',
    );
    return { deleted, kept: keep.map((manifest) => manifest.id) };
  });
  return {
    deletedCount: value.deleted.length,
    deleted: value.deleted,
    keptLast: payload.keepLast,
    kept: value.kept,
    lock,
  };
}

/**
 * Removes partial files and unlisted artifacts, but only when no backup is writing anywhere
 * (the storage-write lock is free): another worker's backup in flight is never touched.
 */
export async function sweepLeftovers(engine: EngineContext): Promise<string[] | undefined> {
  const lock = await engine.locks.tryAcquire(lockResources.storageWrite, 'exclusive');
  if (!lock) {
    engine.logger.info('a backup is writing; leftover sweep skipped until the next start');
    return undefined;
  }
  try {
    return await engine.storage.sweepLeftovers();
  } finally {
    await lock.release();
  }
}
