import {
  AppError,
  type BackupFormat,
  type BackupManifest,
  type Compression,
  newestFirst,
} from '@pgkeep/core';

/**
 * Space checks before a backup or a restore writes to BACKUP_DIR. They refuse only what surely
 * cannot fit: each needs a lower bound of what will be written, never a guess that may be too
 * high (a refused backup is a backup missing). What slips past them and fills the disk fails on
 * ENOSPC as STORAGE_FULL all the same, its partial file removed.
 */

/**
 * A compressed dump is at most this many times smaller than the database's files, for a first
 * backup with nothing to compare with: indexes and free space are not dumped, and zstd or gzip
 * shrink pg_dump's text several times. A bound that is low on purpose (only an almost full disk
 * refuses a first backup); uncompressed, the dump is taken to be at least half the files.
 */
const FIRST_BACKUP_SHRINK: Record<Compression, number> = { zstd: 8, gzip: 8, none: 2 };

/**
 * A compressed artifact decompresses to at least this many times its size: pg_dump writes text
 * (even bytea, as hex), which zstd and gzip shrink at least about 2:1.
 */
const MIN_DECOMPRESSION_RATIO = 2;

export interface BackupKind {
  database: string;
  /** Table keys as the manifest records them, null for a full backup. */
  tables: string[] | null;
  format: BackupFormat;
  compression: Compression;
}

const sameTables = (a: string[] | null, b: string[] | null) =>
  a === null || b === null
    ? a === b
    : a.length === b.length && [...a].sort().join('\n') === [...b].sort().join('\n');

/** The newest completed backup of the same kind that has a local copy, if any. */
export function previousOfKind(
  manifests: readonly BackupManifest[],
  kind: BackupKind,
): BackupManifest | undefined {
  return [...manifests]
    .sort(newestFirst)
    .find(
      (manifest) =>
        manifest.status === 'completed' &&
        manifest.database === kind.database &&
        manifest.format === kind.format &&
        manifest.compression === kind.compression &&
        sameTables(manifest.tables, kind.tables) &&
        manifest.copies.some((copy) => copy.destination === 'local'),
    );
}

/**
 * Bytes a new backup will surely need: the previous backup of its kind (the database may have
 * shrunk since, so never more than the database's own estimate), else the estimate over
 * FIRST_BACKUP_SHRINK.
 */
export function backupSpaceNeeded(
  estimate: number,
  compression: Compression,
  previous: { size: number } | undefined,
): number {
  if (previous) return Math.min(previous.size, estimate);
  return Math.floor(estimate / FIRST_BACKUP_SHRINK[compression]);
}

/**
 * Bytes the scratch directory of a directory-format dump will surely need: pg_dump's
 * uncompressed output, whole on disk before its artifact is written. The previous dump of its
 * kind recorded its size (never more than the database's estimate), else half the estimate.
 */
export function directoryScratchNeeded(
  estimate: number,
  previous: Pick<BackupManifest, 'directory'> | undefined,
): number {
  if (previous?.directory) return Math.min(previous.directory.bytes, estimate);
  return Math.floor(estimate / FIRST_BACKUP_SHRINK.none);
}

/**
 * Bytes the scratch copy of a restore or verify will surely need: the artifact's size, twice
 * that when it is decompressed on the way. (The decompressed size is known only once
 * decompressed; the manifest records the stored bytes.)
 */
export function scratchSpaceNeeded(manifest: BackupManifest, decompress: boolean): number {
  // A directory-format dump is extracted whole: its manifest records those bytes exactly.
  if (manifest.directory) return manifest.directory.bytes;
  return decompress && manifest.compression !== 'none'
    ? manifest.size * MIN_DECOMPRESSION_RATIO
    : manifest.size;
}

const mib = (bytes: number) => `${(bytes / 1024 ** 2).toFixed(1)} MiB`;

/** STORAGE_FULL, before anything is written, when `free` is below `needed`. */
export function assertRoom(what: string, where: string, needed: number, free: number): void {
  if (free >= needed) return;
  throw new AppError(
    'STORAGE_FULL',
    `${what} needs at least ${mib(needed)} in ${where}, and ${mib(free)} is free: refused before writing anything; free some space (the next scheduled run tries again)`,
    { details: { destination: where, neededBytes: needed, freeBytes: free } },
  );
}
