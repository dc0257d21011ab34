import {
  AppError,
  type BackupFormat,
  type BackupManifest,
  type Compression,
  type Retention,
} from '@pgkeep/core';
import { clientConfig, resolveTables } from '@pgkeep/pg';
import { enqueue, readHeartbeats } from '@pgkeep/queue';
import pg from 'pg';
import type { CleanQuery } from '../schemas.js';
import type { TargetServices } from './api-services.js';

/** Every job names its target; the target's name rides along with who asked and when. */
function targetOf(services: TargetServices) {
  return { targetName: services.target.info.name };
}

export interface Requester {
  requestedBy: string;
}

/** Who asked and when: every job records both. */
export function stamp(requester: Requester) {
  return { requestedBy: requester.requestedBy, requestedAt: new Date().toISOString() };
}

export async function enqueueBackup(
  services: TargetServices,
  requester: Requester,
  body: {
    tables?: string[] | undefined;
    format?: BackupFormat | undefined;
    jobs?: number | undefined;
    compression?: Compression | undefined;
    label?: string | undefined;
  },
): Promise<string> {
  const settings = services.target.info.settings;
  const format = body.format ?? settings.format;
  if (body.jobs !== undefined && format !== 'directory') {
    throw new AppError(
      'VALIDATION_ERROR',
      `jobs goes with format directory (this target's format is ${format}): send "format": "directory"`,
    );
  }
  const tables = body.tables ?? settings.tables.include;
  if (body.tables) {
    // Checked up front so the admin hears of a typo at once; the worker checks again with
    // pg_dump --strict-names, since a table may be dropped in between.
    const client = new pg.Client(clientConfig(services.target.database, 'pgkeep-api'));
    client.on('error', () => {});
    try {
      await client.connect().catch((error: unknown) => {
        throw new AppError('DATABASE_UNAVAILABLE', 'the database is not reachable', {
          cause: error,
        });
      });
      await resolveTables(client, body.tables);
    } finally {
      await client.end().catch(() => {});
    }
  }
  return enqueue(services.queues, services.config, 'backup', {
    tables,
    format,
    jobs: format === 'directory' ? (body.jobs ?? settings.dumpJobs) : null,
    compression: body.compression ?? settings.compression,
    label: body.label ?? null,
    type: 'manual',
    excludeTables:
      tables === null && settings.tables.exclude.length > 0 ? settings.tables.exclude : null,
    ...targetOf(services),
    ...stamp(requester),
  });
}

export async function listBackups(services: TargetServices): Promise<BackupManifest[]> {
  return (await services.storage.listManifests()).manifests;
}

export async function getBackup(services: TargetServices, id: string): Promise<BackupManifest> {
  const manifest = await services.storage.getManifest(id);
  if (!manifest) throw new AppError('BACKUP_NOT_FOUND', `backup ${id} not found`);
  return manifest;
}

export async function backupStats(services: TargetServices) {
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
  for (const name of services.target.info.settings.destinations)
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

export async function enqueueDelete(services: TargetServices, requester: Requester, id: string) {
  await getBackup(services, id);
  return enqueue(services.queues, services.config, 'delete', {
    backupId: id,
    ...targetOf(services),
    ...stamp(requester),
  });
}

export async function enqueueCleanup(
  services: TargetServices,
  requester: Requester,
  query: CleanQuery,
) {
  const { config } = services;
  // The request's numbers, else the target's policy, else the environment's.
  const own = services.target.info.settings.retention;
  const retention: Retention =
    query.policy === 'gfs'
      ? {
          kind: 'gfs',
          days: query.days ?? (own.kind === 'gfs' ? own.days : config.BACKUP_GFS_DAYS),
          weeks: query.weeks ?? (own.kind === 'gfs' ? own.weeks : config.BACKUP_GFS_WEEKS),
          months: query.months ?? (own.kind === 'gfs' ? own.months : config.BACKUP_GFS_MONTHS),
          years: query.years ?? (own.kind === 'gfs' ? own.years : config.BACKUP_GFS_YEARS),
        }
      : {
          kind: 'keep-last',
          keepLast:
            query.keepLast ?? (own.kind === 'keep-last' ? own.keepLast : config.BACKUP_KEEP_LAST),
        };
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
    timeZone: services.target.info.settings.timeZone,
    dryRun: query.dryRun === 'true',
    preRestoreMaxAgeDays: config.PRE_RESTORE_MAX_AGE_DAYS,
    ...targetOf(services),
    ...stamp(requester),
  });
}

export async function enqueueVerify(
  services: TargetServices,
  requester: Requester,
  id: string,
  restore: boolean,
) {
  await getBackup(services, id);
  return enqueue(services.queues, services.config, 'verify', {
    backupId: id,
    restore,
    ...targetOf(services),
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
  services: TargetServices,
  requester: Requester,
  id: string,
  body: { confirm?: string | undefined; target?: string | undefined },
) {
  const { config } = services;
  if (!services.target.info.settings.restoreEnabled) {
    throw new AppError(
      'RESTORE_DISABLED',
      services.target.info.name === 'default'
        ? 'restores are disabled (RESTORE_ENABLED=false)'
        : `restores of target ${services.target.info.name} are disabled (restore: false)`,
    );
  }
  const manifest = await getBackup(services, id);
  const target = body.target ?? manifest.database;
  if (target === services.target.maintenance.database || /^template[01]$/.test(target)) {
    throw new AppError('INVALID_DATABASE_NAME', `cannot restore into ${target}`);
  }
  if (body.confirm !== target) {
    throw new AppError(
      'CONFIRMATION_REQUIRED',
      `a restore replaces database ${target}: send "confirm": "${target}" to go ahead`,
    );
  }
  const beats = await readHeartbeats(services.redis, config.REDIS_PREFIX).catch(() => []);
  const dumpMajor = Number.parseInt(manifest.pgDumpVersion, 10);
  if (beats.length > 0 && beats.every((beat) => (beat.pgRestore?.major ?? 0) < dumpMajor)) {
    throw new AppError(
      'PG_RESTORE_TOO_OLD',
      `backup ${id} was made by pg_dump ${manifest.pgDumpVersion}; no worker has a pg_restore that new`,
    );
  }
  return enqueue(services.queues, config, 'restore', {
    backupId: id,
    target,
    ...targetOf(services),
    ...stamp(requester),
  });
}
