import {
  AppError,
  type BackupManifest,
  type JobPayload,
  type JobResult,
  type Retention,
} from '@pgkeep/core';
import {
  dropDatabaseForce,
  type HeldLock,
  listPreRestoreDatabases,
  lockResources,
} from '@pgkeep/pg';
import { destructiveSlots, releaseAll, tryAcquireAll } from './caps.js';
import type { EngineContext, RunContext } from './engine-context.js';
import { selectByGfs } from './gfs-retention.js';
import { selectByKeepLast } from './keep-last.js';
import { maintenanceClient } from './run-restore.js';

/**
 * Runs `work` while holding one of the DESTRUCTIVE_CONCURRENCY slots and the target database's
 * destructive lock, so that destructive jobs (delete, cleanup, restore) of one database never
 * overlap on any worker or host, and at most the cap of them run at once overall.
 */
async function withDestructiveLock<T>(
  engine: EngineContext,
  run: RunContext,
  work: (lock: HeldLock) => Promise<T>,
): Promise<{ value: T; lock: { waitedMs: number; acquiredAt: string; releasedAt: string } }> {
  run.onProgress?.({ phase: 'waiting-for-lock', percent: null });
  const options = { timeoutMs: engine.config.LOCK_TIMEOUT_MS, signal: run.signal };
  const lock = await engine.locks.acquireAny(destructiveSlots(engine.config), options);
  let value: T;
  let releasedAt: Date;
  try {
    const database = await engine.locks
      .acquire(
        lockResources.destructiveDatabase(engine.targetInfo.server, engine.target.database),
        'exclusive',
        options,
      )
      .catch(async (error: unknown) => {
        await lock.release();
        throw error;
      });
    try {
      value = await work(lock);
    } finally {
      await database.release();
    }
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

/** Waits (bounded) until no restore or verify reads the backup, then deletes it. */
export async function deleteBackup(
  engine: EngineContext,
  payload: JobPayload<'delete'>,
  run: RunContext,
): Promise<JobResult<'delete'>> {
  const { value, lock } = await withDestructiveLock(engine, run, async (held) => {
    run.onProgress?.({ phase: 'deleting', percent: null });
    const manifest = await engine.storage.getManifest(payload.backupId);
    if (!manifest) throw new AppError('BACKUP_NOT_FOUND', `backup ${payload.backupId} not found`);
    const inUse = await engine.locks.acquire(lockResources.backup(manifest.id), 'exclusive', {
      timeoutMs: engine.config.LOCK_TIMEOUT_MS,
      signal: run.signal,
    });
    try {
      throwIfStopped(run, held);
      await engine.storage.deleteBackup(manifest);
    } finally {
      await inUse.release();
    }
    run.logger.info({ backupId: manifest.id, filename: manifest.filename }, 'backup deleted');
    return [manifest.id];
  });
  return { deletedCount: value.length, deleted: value, lock };
}

function selectForRetention(
  manifests: BackupManifest[],
  retention: Retention,
  timeZone: string,
): { keep: BackupManifest[]; remove: BackupManifest[] } {
  if (retention.kind === 'keep-last') return selectByKeepLast(manifests, retention.keepLast);
  return selectByGfs(manifests, retention, timeZone);
}

/**
 * Applies the retention policy (keep the newest N, or GFS), never deleting the newest backup
 * nor one that a running restore or verify is reading (it is skipped and said so), and drops
 * replaced databases older than their age limit. A dry run reports and deletes nothing.
 */
export async function cleanupBackups(
  engine: EngineContext,
  payload: JobPayload<'cleanup'>,
  run: RunContext,
): Promise<JobResult<'cleanup'>> {
  const { retention, dryRun } = payload;
  const { value, lock } = await withDestructiveLock(engine, run, async (held) => {
    run.onProgress?.({ phase: 'cleaning', percent: 0 });
    const { manifests } = await engine.storage.listManifests();
    const { keep, remove } = selectForRetention(manifests, retention, payload.timeZone);
    const deleted: string[] = [];
    const skipped: { id: string; reason: string }[] = [];
    for (const manifest of remove) {
      throwIfStopped(run, held);
      const inUse = await engine.locks.tryAcquire(lockResources.backup(manifest.id), 'exclusive');
      if (!inUse) {
        skipped.push({ id: manifest.id, reason: 'a restore or verify is reading it' });
        continue;
      }
      try {
        // A dry run reports what the real one would do, skips included, and deletes nothing.
        if (!dryRun) await engine.storage.deleteBackup(manifest);
      } finally {
        await inUse.release();
      }
      deleted.push(manifest.id);
      run.onProgress?.({
        phase: 'cleaning',
        percent: Math.floor((deleted.length / remove.length) * 100),
      });
    }
    const droppedDatabases = await dropExpiredPreRestoreDatabases(engine, payload, run);
    run.logger.info(
      {
        dryRun,
        deletedCount: deleted.length,
        kept: keep.length,
        skipped,
        droppedDatabases,
        retention,
      },
      dryRun ? 'cleanup dry run completed' : 'cleanup completed',
    );
    return { deleted, skipped, droppedDatabases, kept: keep.map((manifest) => manifest.id) };
  });
  return {
    dryRun,
    deletedCount: value.deleted.length,
    deleted: value.deleted,
    keptLast: retention.kind === 'keep-last' ? retention.keepLast : null,
    kept: value.kept,
    skipped: value.skipped,
    droppedDatabases: value.droppedDatabases,
    lock,
  };
}

async function dropExpiredPreRestoreDatabases(
  engine: EngineContext,
  payload: JobPayload<'cleanup'>,
  run: RunContext,
): Promise<string[]> {
  if (payload.preRestoreMaxAgeDays === 0) return [];
  const cutoff = Date.now() - payload.preRestoreMaxAgeDays * 86_400_000;
  const admin = await maintenanceClient(engine);
  try {
    // Every replaced database of this deployment on the target's server past the one age limit
    // (PRE_RESTORE_MAX_AGE_DAYS), whichever target's clean-up comes first.
    const expired = (await listPreRestoreDatabases(admin, engine.config.LOCK_NAMESPACE)).filter(
      (db) => db.replacedAt.getTime() < cutoff,
    );
    if (!payload.dryRun) {
      for (const db of expired) {
        await dropDatabaseForce(admin, db.name);
        run.logger.info(
          { database: db.name, replacedAt: db.replacedAt },
          'dropped a replaced database past its age limit',
        );
      }
    }
    return expired.map((db) => db.name);
  } finally {
    await admin.end().catch(() => {});
  }
}

/**
 * Removes partial files and unlisted artifacts, but only when no backup is writing anywhere
 * (the storage-write lock is free): another worker's backup in flight is never touched.
 */
export async function sweepLeftovers(
  engine: Pick<EngineContext, 'locks' | 'storage' | 'logger'>,
): Promise<string[] | undefined> {
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

/**
 * Runs `work` on the catalog while no delete, clean-up or restore runs (every destructive slot)
 * and no backup is between writing its remote manifest and its catalog entry (storage-write):
 * waited for (`wait`), or else skipped with `undefined` until the next start.
 */
async function withCatalogAlone<T>(
  engine: Pick<EngineContext, 'config' | 'locks' | 'logger'>,
  what: string,
  wait: boolean,
  work: () => Promise<T>,
): Promise<T | undefined> {
  const take = (resource: string) =>
    wait
      ? engine.locks.acquire(resource, 'exclusive', { timeoutMs: engine.config.LOCK_TIMEOUT_MS })
      : engine.locks.tryAcquire(resource, 'exclusive');
  const slots = destructiveSlots(engine.config);
  const destructive = wait
    ? await Promise.all(slots.map((slot) => take(slot) as Promise<HeldLock>))
    : await tryAcquireAll(engine.locks, slots);
  const writes = destructive ? await take(lockResources.storageWrite) : undefined;
  if (!destructive || !writes) {
    if (destructive) await releaseAll(destructive);
    engine.logger.info(`a job is running; ${what} skipped until the next start`);
    return undefined;
  }
  try {
    return await work();
  } finally {
    await writes.release();
    await releaseAll(destructive);
  }
}

/**
 * Signs, once per catalog key, the manifests written before it (see BackupStore.signCatalog).
 * Skipped until the next start while a job that changes the catalog runs.
 */
export async function signCatalog(
  engine: Pick<EngineContext, 'config' | 'storage' | 'locks' | 'logger'>,
): Promise<{ signed: string[] } | undefined> {
  if (!engine.storage.catalog.catalogKeys.signing) return undefined;
  return withCatalogAlone(engine, 'signing the catalog', false, () => engine.storage.signCatalog());
}

/**
 * Adds back to the catalog the backups whose manifests a remote destination holds (the local
 * disk was lost, or this is a new machine). Skipped (at start) or waited for (the command)
 * while a job that changes the catalog runs. `dryRun`: what it would add, nothing written; it
 * takes no lock, so it neither waits for a long restore nor holds up a job: a report of now.
 */
export async function rebuildCatalog(
  engine: Pick<EngineContext, 'config' | 'storage' | 'locks' | 'logger'>,
  options: { wait: boolean; dryRun?: boolean } = { wait: false },
): Promise<{ added: string[]; unreachable: string[] } | undefined> {
  if (!engine.storage.destinations.some((destination) => destination.kind !== 'local')) {
    return { added: [], unreachable: [] };
  }
  if (options.dryRun) return engine.storage.rebuildCatalog({ dryRun: true });
  return withCatalogAlone(engine, 'catalog rebuild', options.wait, () =>
    engine.storage.rebuildCatalog(),
  );
}
