import {
  AppError,
  type BackupFormat,
  type BackupManifest,
  type Compression,
  type Retention,
} from '@pgkeep/core';
import { resolveTables } from '@pgkeep/pg';
import { enqueue, readHeartbeats } from '@pgkeep/queue';
import type { CleanQuery } from '../schemas.js';
import type { ApiServices } from './api-services.js';

export interface Requester {
  requestedBy: string;
}

function stamp(requester: Requester) {
  return { requestedBy: requester.requestedBy, requestedAt: new Date().toISOString() };
}

export async function enqueueBackup(
  services: ApiServices,
  requester: Requester,
  body: {
    tables?: string[] | undefined;
    format?: BackupFormat | undefined;
    compression?: Compression | undefined;
    label?: string | undefined;
  },
): Promise<string> {
  const tables = body.tables ?? null;
  if (tables) {
    // Checked up front so the admin hears of a typo at once; the worker checks again with
    // pg_dump --strict-names, since a table may be dropped in between.
    const client = await services.db.connect().catch((error: unknown) => {
      throw new AppError('DATABASE_UNAVAILABLE', 'the database is not reachable', { cause: error });
    });
    try {
      await resolveTables(client, tables);
    } finally {
      client.release();
    }
  }
  return enqueue(services.queues, services.config, 'backup', {
    tables,
    format: body.format ?? services.config.BACKUP_FORMAT,
    compression: body.compression ?? services.config.BACKUP_COMPRESSION,
    label: body.label ?? null,
    type: 'manual',
    ...stamp(requester),
  });
}

export async function listBackups(services: ApiServices): Promise<BackupManifest[]> {
  return (await services.storage.listManifests()).manifests;
}

export async function getBackup(services: ApiServices, id: string): Promise<BackupManifest> {
  const manifest = await services.storage.getManifest(id);
  if (!manifest) throw new AppError('BACKUP_NOT_FOUND', `backup ${id} not found`);
  return manifest;
}

export async function backupStats(services: ApiServices) {
  const manifests = await listBackups(services);
  const summary = (manifest: BackupManifest | undefined) =>
    manifest
      ? {
          id: manifest.id,
          filename: manifest.filename,
          createdAt: manifest.createdAt,
          size: manifest.size,
        }
      : null;
  // Per destination: what each one holds, by the catalog (a copy per backup and destination).
  const byDestination: Record<string, { backups: number; size: number }> = {};
  for (const name of services.config.BACKUP_DESTINATIONS)
    byDestination[name] = { backups: 0, size: 0 };
  for (const manifest of manifests) {
    for (const copy of manifest.copies) {
      const entry = byDestination[copy.destination] ?? { backups: 0, size: 0 };
      byDestination[copy.destination] = entry;
      entry.backups += 1;
      entry.size += copy.size;
    }
  }
  return {
    totalBackups: manifests.length,
    totalSize: manifests.reduce((sum, manifest) => sum + manifest.size, 0),
    oldestBackup: summary(manifests.at(-1)),
    newestBackup: summary(manifests[0]),
    encryptedBackups: manifests.filter((manifest) => manifest.encryption !== null).length,
    byDestination,
  };
}

export async function enqueueDelete(services: ApiServices, requester: Requester, id: string) {
  await getBackup(services, id);
  return enqueue(services.queues, services.config, 'delete', { backupId: id, ...stamp(requester) });
}

export async function enqueueCleanup(
  services: ApiServices,
  requester: Requester,
  query: CleanQuery,
) {
  const { config } = services;
  const retention: Retention =
    query.policy === 'gfs'
      ? {
          kind: 'gfs',
          days: query.days ?? config.BACKUP_GFS_DAYS,
          weeks: query.weeks ?? config.BACKUP_GFS_WEEKS,
          months: query.months ?? config.BACKUP_GFS_MONTHS,
          years: query.years ?? config.BACKUP_GFS_YEARS,
        }
      : { kind: 'keep-last', keepLast: query.keepLast ?? config.BACKUP_KEEP_LAST };
  if (
    retention.kind === 'gfs' &&
    retention.days + retention.weeks + retention.months + retention.years === 0
  ) {
    throw new AppError(
      'VALIDATION_ERROR',
      'a GFS policy must keep something: give days, weeks, months or years',
    );
  }
  return enqueue(services.queues, config, 'cleanup', {
    retention,
    timeZone: config.BACKUP_TIMEZONE,
    dryRun: query.dryRun === 'true',
    preRestoreMaxAgeDays: config.PRE_RESTORE_MAX_AGE_DAYS,
    ...stamp(requester),
  });
}

export async function enqueueVerify(
  services: ApiServices,
  requester: Requester,
  id: string,
  restore: boolean,
) {
  await getBackup(services, id);
  return enqueue(services.queues, services.config, 'verify', {
    backupId: id,
    restore,
    ...stamp(requester),
  });
}

/**
 * Checked before queueing, so the admin hears at once: restores enabled, the backup exists,
 * the confirmation names the target, the target is not the maintenance database, and a live
 * worker's pg_restore can read the archive. The worker checks all of it again, and the
 * artifact's checksum, before it touches anything.
 */
export async function enqueueRestore(
  services: ApiServices,
  requester: Requester,
  id: string,
  body: { confirm?: string | undefined; target?: string | undefined },
) {
  const { config } = services;
  if (!config.RESTORE_ENABLED)
    throw new AppError('RESTORE_DISABLED', 'restores are disabled (RESTORE_ENABLED=false)');
  const manifest = await getBackup(services, id);
  const target = body.target ?? manifest.database;
  if (target === config.MAINTENANCE_DATABASE || /^template[01]$/.test(target)) {
    throw new AppError('INVALID_DATABASE_NAME', `cannot restore into ${target}`);
  }
  if (body.confirm !== target) {
    throw new AppError(
      'CONFIRMATION_REQUIRED',
      `a restore replaces database ${target}: send "confirm": "${target}" to go ahead`,
    );
  }
  const beats = await readHeartbeats(services.redis, config.QUEUE_PREFIX).catch(() => []);
  const dumpMajor = Number.parseInt(manifest.pgDumpVersion, 10);
  if (beats.length > 0 && beats.every((beat) => (beat.pgRestore?.major ?? 0) < dumpMajor)) {
    throw new AppError(
      'PG_RESTORE_TOO_OLD',
      `backup ${id} was made by pg_dump ${manifest.pgDumpVersion}; no worker has a pg_restore that new`,
    );
  }
  return enqueue(services.queues, config, 'restore', { backupId: id, target, ...stamp(requester) });
}
