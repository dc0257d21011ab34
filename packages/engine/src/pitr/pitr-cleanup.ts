import {
  AppError,
  type ArchivedWal,
  type BaseBackupManifest,
  type JobPayload,
  type JobResult,
  newestFirst,
} from '@pgkeep/core';
import type { HeldLock } from '@pgkeep/pg';
import { destructiveSlots } from '../caps.js';
import type { RunContext } from '../engine-context.js';
import { selectByGfs } from '../gfs-retention.js';
import { selectByKeepLast } from '../keep-last.js';
import type { PitrContext } from './run-basebackup.js';
import { isSegmentName, parseSegmentName, segmentName } from './wal-position.js';

/** Held shared by whatever reads a server's archive (a PITR restore); the clean-up takes it alone. */
export const archiveLockResource = (server: string) => `pitr-archive:${server}`;

export interface ArchivePlan {
  keep: BaseBackupManifest[];
  remove: BaseBackupManifest[];
  /** The first segment the oldest kept base backup needs; null: nothing kept, no WAL goes. */
  keepFrom: string | null;
  removeWal: ArchivedWal[];
}

/** Whether every segment from a base backup's start to its stop is archived: it can be restored. */
function hasItsWal(manifest: BaseBackupManifest, names: ReadonlySet<string>): boolean {
  const size = manifest.walSegmentSize;
  const last = parseSegmentName(manifest.stopSegment, size).segno;
  for (let segno = parseSegmentName(manifest.startSegment, size).segno; segno <= last; segno++) {
    if (!names.has(segmentName(manifest.timeline, segno, size))) return false;
  }
  return true;
}

/**
 * Base backups by the policy (the newest always kept), and every archived WAL segment older
 * than the start of the oldest kept one, on its timeline or an earlier one. The newest base
 * backup whose WAL is all archived is kept too: a newer one whose stop segment has not reached
 * the archive yet (the receiver behind, or down) cannot be restored, and keeping only it would
 * leave nothing to restore from. History files are kept (a few bytes each; recovery asks for
 * them). Pure.
 */
export function planArchiveCleanup(
  manifests: readonly BaseBackupManifest[],
  archived: readonly ArchivedWal[],
  retention: JobPayload<'pitr-cleanup'>['retention'],
  timeZone: string,
): ArchivePlan {
  const selection =
    retention.kind === 'keep-last'
      ? selectByKeepLast(manifests, retention.keepLast)
      : selectByGfs(manifests, retention, timeZone);
  const names = new Set(archived.map((entry) => entry.name));
  const restorable = [...manifests].sort(newestFirst).find((m) => hasItsWal(m, names));
  const keep = [...selection.keep];
  let remove = selection.remove;
  if (restorable && !keep.includes(restorable)) {
    keep.push(restorable);
    keep.sort(newestFirst);
    remove = remove.filter((manifest) => manifest !== restorable);
  }
  const oldest = [...keep].sort((a, b) =>
    a.startSegment.slice(8).localeCompare(b.startSegment.slice(8)),
  )[0];
  if (!oldest) return { keep, remove, keepFrom: null, removeWal: [] };
  const size = oldest.walSegmentSize;
  const from = parseSegmentName(oldest.startSegment, size);
  const removeWal = archived.filter((entry) => {
    if (!isSegmentName(entry.name)) return false;
    const segment = parseSegmentName(entry.name, size);
    return segment.timeline <= from.timeline && segment.segno < from.segno;
  });
  return { keep, remove, keepFrom: oldest.startSegment, removeWal };
}

/**
 * The archive's clean-up: a destructive job (one of the destructive slots, and the archive's
 * lock alone, so no restore reads a file it deletes). Base backups go first (out of the
 * catalog, then every copy), then the WAL no kept base backup needs, oldest first, in every
 * destination. A dry run deletes nothing and says what it would.
 */
export async function cleanupArchive(
  context: PitrContext,
  payload: JobPayload<'pitr-cleanup'>,
  run: RunContext,
): Promise<JobResult<'pitr-cleanup'>> {
  const { config, locks, archive, server } = context;
  if (!server.pitr) {
    throw new AppError('PITR_NOT_ENABLED', `server ${server.name} has no point-in-time recovery`);
  }
  const lockOptions = { timeoutMs: config.LOCK_TIMEOUT_MS, signal: run.signal };
  run.onProgress?.({ phase: 'waiting-for-lock', percent: null });
  const started = Date.now();
  const held: HeldLock[] = [];
  try {
    held.push(await locks.acquireAny(destructiveSlots(config), lockOptions));
    held.push(await locks.acquire(archiveLockResource(server.name), 'exclusive', lockOptions));
    const acquiredAt = new Date();
    run.onProgress?.({ phase: 'cleaning', percent: 0 });
    const { manifests } = await archive.baseBackups();
    const archived = [...(await archive.archived()).values()];
    const plan = planArchiveCleanup(manifests, archived, payload.retention, payload.timeZone);
    const sorted = [...plan.removeWal].sort((a, b) => a.name.localeCompare(b.name));
    const deletedBytes = sorted.reduce((sum, entry) => sum + entry.size, 0);
    if (!payload.dryRun) {
      for (const manifest of plan.remove) {
        run.signal?.throwIfAborted();
        await archive.removeBaseBackup(manifest);
      }
      await archive.removeWal(sorted);
    }
    run.logger.info(
      {
        dryRun: payload.dryRun,
        kept: plan.keep.map((m) => m.id),
        deleted: plan.remove.map((m) => m.id),
        keptFromSegment: plan.keepFrom,
        deletedSegments: sorted.length,
      },
      payload.dryRun ? 'archive clean-up (dry run)' : 'archive cleaned up',
    );
    const releasedAt = new Date();
    return {
      server: server.name,
      dryRun: payload.dryRun,
      kept: plan.keep.map((m) => m.id),
      deletedBaseBackups: plan.remove.map((m) => m.id),
      keptFromSegment: plan.keepFrom,
      deletedSegments: sorted.length,
      firstDeleted: sorted[0]?.name ?? null,
      lastDeleted: sorted[sorted.length - 1]?.name ?? null,
      deletedBytes,
      lock: {
        waitedMs: acquiredAt.getTime() - started,
        acquiredAt: acquiredAt.toISOString(),
        releasedAt: releasedAt.toISOString(),
      },
    };
  } finally {
    for (const lock of held.reverse()) await lock.release().catch(() => {});
  }
}
