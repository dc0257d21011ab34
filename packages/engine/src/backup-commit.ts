import {
  type BackupManifest,
  type DirectoryDump,
  encryptionAlgorithm,
  type JobPayload,
  type QualifiedTable,
  tableKey,
} from '@pgkeep/core';
import type { WrittenCopies } from '@pgkeep/storage';
import type { EngineContext, RunContext } from './engine-context.js';

/** What a dump path wrote, and what the manifest says of it. */
export interface DumpWritten {
  payload: JobPayload<'backup'>;
  started: Date;
  id: string;
  filename: string;
  tables: readonly QualifiedTable[] | null;
  excluded: readonly QualifiedTable[];
  serverVersion: string;
  encryption: { keyId: string; chunkBytes: number } | null;
  artifact: WrittenCopies;
  rowCounts: Record<string, number>;
  /** The directory format's dump (directory-dump.ts). */
  directory?: DirectoryDump | undefined;
  /** From the job's start, for the log: pg_dump started, and its first byte arrived (ms). */
  timings?: { spawnedMs?: number | undefined; firstByteMs?: number | undefined } | undefined;
}

/**
 * The manifest, written last, beside every copy and in the catalog: from then on the backup
 * exists. Both dump paths end here; a failure removes every copy written.
 */
export async function commitBackup(
  engine: EngineContext,
  run: RunContext,
  written: DumpWritten,
): Promise<BackupManifest> {
  const { storage, target, targetInfo } = engine;
  const { payload, started, id, filename, tables, excluded, encryption, artifact } = written;
  const log = run.logger.child({ backupId: id });
  const completed = new Date();
  const manifest: BackupManifest = {
    manifestVersion: 2,
    id,
    filename,
    size: artifact.size,
    sha256: artifact.sha256,
    createdAt: started.toISOString(),
    completedAt: completed.toISOString(),
    durationMs: completed.getTime() - started.getTime(),
    type: payload.type,
    status: 'completed',
    format: payload.format,
    compression: payload.compression,
    ...(written.directory ? { directory: written.directory } : {}),
    tables: tables ? tables.map(tableKey) : null,
    database: target.database,
    target: targetInfo.name,
    server: targetInfo.server,
    ...(excluded.length > 0 ? { excludedTables: excluded.map(tableKey) } : {}),
    serverVersion: written.serverVersion,
    pgDumpVersion: engine.pgDump.version,
    rowCounts: written.rowCounts,
    requestedBy: payload.requestedBy,
    label: payload.label,
    jobId: run.jobId,
    encryption: encryption
      ? {
          algorithm: encryptionAlgorithm,
          keyId: encryption.keyId,
          chunkBytes: encryption.chunkBytes,
        }
      : null,
    copies: artifact.copies,
    failedCopies: artifact.failedCopies,
  };
  try {
    await storage.commitManifest(manifest);
  } catch (error) {
    // Nothing of this backup may stay behind, or a catalog rebuild would bring it back.
    for (const copy of manifest.copies) {
      await storage
        .destination(copy.destination)
        ?.deleteManifest(id)
        .catch(() => {});
    }
    await artifact.discard();
    throw error;
  }
  log.info(
    {
      filename,
      size: artifact.size,
      durationMs: manifest.durationMs,
      copies: manifest.copies.map((copy) => copy.destination),
      ...(artifact.failedCopies.length > 0
        ? { failedCopies: artifact.failedCopies.map((copy) => copy.destination) }
        : {}),
      encrypted: manifest.encryption !== null,
      ...(written.directory ? { directory: written.directory } : {}),
      ...written.timings,
    },
    'backup completed',
  );
  return manifest;
}
