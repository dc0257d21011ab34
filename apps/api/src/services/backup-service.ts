import { AppError, type BackupFormat, type BackupManifest, type Compression } from '@pgkeep/core';
import { resolveTables } from '@pgkeep/pg';
import { enqueue } from '@pgkeep/queue';
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
  return {
    totalBackups: manifests.length,
    totalSize: manifests.reduce((sum, manifest) => sum + manifest.size, 0),
    oldestBackup: summary(manifests.at(-1)),
    newestBackup: summary(manifests[0]),
  };
}

export async function enqueueDelete(services: ApiServices, requester: Requester, id: string) {
  await getBackup(services, id);
  return enqueue(services.queues, services.config, 'delete', { backupId: id, ...stamp(requester) });
}

export async function enqueueCleanup(
  services: ApiServices,
  requester: Requester,
  keepLast: number,
) {
  return enqueue(services.queues, services.config, 'cleanup', { keepLast, ...stamp(requester) });
}
