import { rm } from 'node:fs/promises';
import os from 'node:os';
import type { Duplex, Readable } from 'node:stream';
import {
  AppError,
  type BackupManifest,
  type DirectoryDump,
  isStorageFull,
  type JobPayload,
  type QualifiedTable,
  storageFullError,
} from '@pgkeep/core';
import { ChildProcessError, startPgDump } from '@pgkeep/pg';
import type { WrittenCopies } from '@pgkeep/storage';
import { compressionStage, joinStages, zstdReading } from './compression.js';
import { directoryBytes, listDumpDirectory, startTarOfDirectory } from './directory-archive.js';
import type { EngineContext, RunContext } from './engine-context.js';
import { assertRoom, backupSpaceNeeded, directoryScratchNeeded } from './free-space.js';
import { pgDumpError } from './pg-dump-error.js';
import { throwIfAborted } from './restore-steps.js';

/**
 * The directory format: `pg_dump --format=directory --jobs=N` into a scratch directory in
 * BACKUP_DIR (N+1 connections sharing the backup's snapshot), then, once pg_dump has finished
 * well, the directory as one tar through the backup's compression and encryption into every
 * destination, by the same copies path as every backup. The scratch directory is removed on
 * every path out; a worker that dies leaves a `.partial` that the start-up sweep removes.
 */

/** pg_dump --jobs when neither the request, the target nor BACKUP_DUMP_JOBS says. */
export function defaultDumpJobs(cores: number = os.availableParallelism()): number {
  return Math.max(1, Math.min(4, cores));
}

export interface DirectoryBackupInput {
  payload: JobPayload<'backup'>;
  id: string;
  filename: string;
  snapshot: string | undefined;
  tables: readonly QualifiedTable[] | null;
  excludeTables: readonly QualifiedTable[];
  /** The size of what is dumped, from the catalog: the progress's denominator. */
  estimate: number;
  /** Same-kind backup before this one, for the space check (see free-space.ts). */
  previous: BackupManifest | undefined;
  /** The last stage of every backup when encryption is on. */
  encryption: { stream: Duplex } | null;
  signal: AbortSignal;
  /** Exact row counts in the dump's snapshot, started as pg_dump starts (see runBackup). */
  countRows: () => Promise<Record<string, number>>;
}

export interface DirectoryBackup {
  artifact: WrittenCopies;
  rowCounts: Record<string, number>;
  directory: DirectoryDump;
  /** Uncompressed bytes pg_dump wrote. */
  bytesRead: number;
}

export async function writeDirectoryBackup(
  engine: EngineContext,
  run: RunContext,
  input: DirectoryBackupInput,
): Promise<DirectoryBackup> {
  const { config, storage } = engine;
  const { payload, signal } = input;
  const jobs = payload.jobs ?? defaultDumpJobs();
  const local = storage.local;
  // The dump is whole on disk before its artifact is written: both at once, at the peak.
  const scratchNeeded = directoryScratchNeeded(input.estimate, input.previous);
  const artifactNeeded = local
    ? backupSpaceNeeded(input.estimate, payload.compression, input.previous)
    : 0;
  assertRoom(
    `this directory-format backup (its uncompressed dump in a scratch directory, ${Math.ceil(scratchNeeded / 1024 ** 2)} MiB at least${local ? ', and then its compressed artifact beside it' : ''})`,
    storage.catalog.where,
    scratchNeeded + artifactNeeded,
    await storage.freeBytes(),
  );

  const scratch = storage.scratchPathOf(input.id, 'dump');
  let bytesRead = 0;
  let bytesWritten = 0;
  const report = (phase: 'dumping' | 'archiving') =>
    run.onProgress?.({
      phase,
      // pg_dump's share first (to 90), then the tar's; capped at 99 until the manifest exists.
      percent:
        input.estimate > 0
          ? Math.min(
              99,
              phase === 'dumping'
                ? Math.floor((bytesRead / input.estimate) * 90)
                : 90 + Math.floor((bytesWritten / Math.max(1, bytesRead)) * 9),
            )
          : null,
      bytesRead,
      bytesWritten,
    });
  try {
    const dump = startPgDump({
      target: engine.target,
      format: 'directory',
      directory: scratch,
      jobs,
      tables: input.tables,
      excludeTables: input.excludeTables,
      snapshot: input.snapshot,
      signal,
    });
    // Counted while pg_dump runs, in the same snapshot: the counts match the dump's data.
    const counting = input.countRows();
    counting.catch(() => {});
    // pg_dump's workers are processes of their own: the progress is what the directory holds.
    const progress = setInterval(() => {
      void directoryBytes(scratch).then((bytes) => {
        bytesRead = bytes;
        report('dumping');
      });
    }, 1000);
    try {
      await dump.done;
    } catch (error) {
      throwIfAborted(signal);
      // pg_dump says so on its stderr when the scratch directory's disk is full.
      if (isStorageFull(error)) throw storageFullError(storage.catalog.where, error);
      throw pgDumpError(error);
    } finally {
      clearInterval(progress);
    }
    const listing = await listDumpDirectory(scratch);
    bytesRead = listing.bytes;
    report('dumping');

    const tarChild = startTarOfDirectory(scratch, listing, signal);
    const { stdout } = tarChild.child;
    if (!stdout) throw new Error('tar was started without a stdout pipe');
    let stages: [Readable, ...Duplex[]];
    let compressed: Promise<void>;
    if (payload.compression === 'zstd') {
      // tar | zstd -T<jobs> through a kernel pipe: only the compressed bytes pass through here.
      const zstd = zstdReading(stdout, config.BACKUP_ZSTD_LEVEL, signal, jobs);
      stages = [zstd.output];
      compressed = zstd.done;
    } else {
      const compressor = compressionStage(
        payload.compression,
        { zstd: config.BACKUP_ZSTD_LEVEL, gzip: config.BACKUP_GZIP_LEVEL },
        signal,
      );
      stages = [stdout, compressor.stream];
      compressed = compressor.done;
    }
    const source = joinStages(stages, input.encryption);

    let rowCounts: Record<string, number> = {};
    let artifact: WrittenCopies;
    try {
      artifact = await storage.writeCopies(input.filename, source, {
        signal,
        sizeHint: listing.bytes,
        onBytes: (written: number) => {
          bytesWritten = written;
          report('archiving');
        },
        beforeCommit: async () => {
          await tarChild.done;
          await compressed;
          rowCounts = await counting;
        },
      });
    } catch (error) {
      throwIfAborted(signal);
      if (isStorageFull(error)) throw storageFullError(storage.catalog.where, error);
      if (error instanceof ChildProcessError && error.command === 'zstd') {
        throw new AppError('COMPRESSION_FAILED', error.message, { cause: error });
      }
      if (error instanceof AppError) throw error;
      throw new AppError(
        'STORAGE_ERROR',
        `the backup could not be written: ${(error as Error).message}`,
        { retryable: true, cause: error },
      );
    }
    return {
      artifact,
      rowCounts,
      directory: { jobs, files: listing.names.length, bytes: listing.bytes },
      bytesRead,
    };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
