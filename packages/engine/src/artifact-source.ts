import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { type Duplex, PassThrough, type Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  AppError,
  type BackupManifest,
  type Compression,
  type DirectoryDump,
  isStorageFull,
  type JobProgress,
  storageFullError,
  toAppError,
} from '@pgkeep/core';
import { lockResources, startChild } from '@pgkeep/pg';
import type { Destination } from '@pgkeep/storage';
import { decompressionStage } from './compression.js';
import { dumpDirectoryExtractor } from './directory-archive.js';
import type { EngineContext } from './engine-context.js';
import { feedWhileRead } from './feed-while-read.js';
import { assertRoom, scratchSpaceNeeded } from './free-space.js';

type Progress = (progress: JobProgress) => void;

/**
 * A backup's pg_dump output as a local file (a directory-format dump: a directory) that has
 * passed every check: the sha256 of the stored bytes matches the manifest and, when encrypted,
 * every chunk authenticated. Nothing reads it before that. `compression` says whether it still
 * needs decompressing.
 */
export interface PreparedArtifact {
  file: string;
  compression: Compression;
  /** The destination whose copy was used. */
  destination: string;
  cleanup(): Promise<void>;
}

export interface PrepareOptions {
  /** Decompress into the file (pg_restore -j needs a plain, seekable archive). */
  decompress: boolean;
  onProgress?: Progress | undefined;
  signal?: AbortSignal | undefined;
  /** Destinations whose copy the caller has just hashed against the manifest (a verify). */
  hashed?: ReadonlySet<string> | undefined;
}

/** The job's progress while `bytesRead` of the stored artifact have been checked. */
function verifying(manifest: BackupManifest, bytesRead: number): JobProgress {
  return {
    phase: 'verifying',
    percent: manifest.size > 0 ? Math.min(99, Math.floor((bytesRead / manifest.size) * 100)) : null,
    bytesRead,
  };
}

function progressTap(manifest: BackupManifest, onProgress: Progress | undefined) {
  const hash = createHash('sha256');
  let size = 0;
  let lastReport = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      size += chunk.length;
      const now = Date.now();
      if (onProgress && now - lastReport >= 250) {
        lastReport = now;
        onProgress(verifying(manifest, size));
      }
      callback(null, chunk);
    },
  });
  return { tap, result: () => ({ sha256: hash.digest('hex'), size }) };
}

function assertMatches(
  manifest: BackupManifest,
  destination: string,
  actual: { sha256: string; size: number },
): void {
  if (actual.size !== manifest.size || actual.sha256 !== manifest.sha256) {
    throw new AppError(
      'CHECKSUM_MISMATCH',
      `the copy of backup ${manifest.id} in ${destination} does not match its manifest (size ${actual.size} of ${manifest.size}, sha256 ${actual.sha256.slice(0, 12)}… expected ${manifest.sha256.slice(0, 12)}…)`,
    );
  }
}

/** Reads one copy whole, hashing it; for the verify job's per-copy check. */
export async function hashCopy(
  manifest: BackupManifest,
  destination: Destination,
  onProgress: Progress | undefined,
  signal: AbortSignal | undefined,
): Promise<void> {
  const { tap, result } = progressTap(manifest, onProgress);
  const sink = new Writable({
    write(_chunk, _encoding, callback) {
      callback();
    },
  });
  await pipeline(
    [await destination.openArtifact(manifest.filename), tap, sink],
    signal ? { signal } : {},
  );
  assertMatches(manifest, destination.name, result());
}

/** Fails early, with the key id, when the backup's key is not configured. */
export function assertKeyAvailable(engine: EngineContext, manifest: BackupManifest): void {
  if (manifest.encryption && !engine.keyRing.hasKey(manifest.encryption.keyId)) {
    throw new AppError(
      'ENCRYPTION_KEY_MISSING',
      `backup ${manifest.id} is encrypted with key ${manifest.encryption.keyId}, which is not configured (BACKUP_ENCRYPTION_KEY, BACKUP_ENCRYPTION_OLD_KEYS)`,
    );
  }
}

/**
 * Local, not encrypted, compressed with zstd, to be decompressed: `zstd -d -o <scratch>` reads
 * the artifact itself while this process hashes it alongside; both must succeed.
 */
async function decompressLocalZstd(
  manifest: BackupManifest,
  artifact: string,
  scratch: string,
  options: PrepareOptions,
): Promise<void> {
  const zstd = startChild('zstd', ['-d', '-q', '-f', '-o', scratch, artifact], {
    env: { PATH: process.env.PATH },
    signal: options.signal,
  });
  const { tap, result } = progressTap(manifest, options.onProgress);
  const sink = new Writable({
    write(_chunk, _encoding, callback) {
      callback();
    },
  });
  const hashing = pipeline(
    [createReadStream(artifact), tap, sink],
    options.signal ? { signal: options.signal } : {},
  );
  const [hashed, decompressed] = await Promise.allSettled([hashing, zstd.done]);
  // The checksum speaks first: a changed file is reported as such, not as a zstd error.
  if (hashed.status === 'rejected') throw hashed.reason;
  assertMatches(manifest, 'local', result());
  if (decompressed.status === 'rejected') {
    if (isStorageFull(decompressed.reason)) throw decompressed.reason;
    throw new AppError('PG_RESTORE_FAILED', `zstd could not decompress backup ${manifest.id}`, {
      cause: decompressed.reason,
    });
  }
}

/** Any copy through hash, decryption and (optionally) decompression into `scratch`. */
async function streamCopy(
  engine: EngineContext,
  manifest: BackupManifest,
  destination: Destination,
  scratch: string,
  options: PrepareOptions,
): Promise<void> {
  const { tap, result } = progressTap(manifest, options.onProgress);
  const stages: [Readable, ...Duplex[]] = [await destination.openArtifact(manifest.filename), tap];
  if (manifest.encryption) stages.push(engine.keyRing.decryptStream(manifest.encryption.keyId));
  let decompressed: Promise<void> = Promise.resolve();
  if (options.decompress) {
    const stage = decompressionStage(manifest.compression, options.signal);
    stages.push(stage.stream);
    decompressed = stage.done;
  }
  await Promise.all([
    pipeline(
      [...stages, createWriteStream(scratch, { mode: 0o600, flags: 'wx' })],
      options.signal ? { signal: options.signal } : {},
    ),
    decompressed,
  ]);
  assertMatches(manifest, destination.name, result());
}

/**
 * A directory-format backup's copy, extracted into the directory `scratch` as it streams by:
 * decryption, decompression and tar's reading (directory-archive.ts, strict about what it
 * writes) all in one pass. Every byte of the copy is hashed even when the extraction stops
 * early, so that a changed copy is reported as such, before whatever it made a stage fail.
 */
async function extractDirectoryCopy(
  engine: EngineContext,
  manifest: BackupManifest,
  expected: DirectoryDump,
  destination: Destination,
  scratch: string,
  options: PrepareOptions,
): Promise<void> {
  // Opened first: a copy that is missing starts no decompressor.
  const copy = await destination.openArtifact(manifest.filename);
  await mkdir(scratch, { mode: 0o700 }).catch((error: unknown) => {
    copy.destroy();
    throw error;
  });
  const { tap, result } = progressTap(manifest, options.onProgress);
  const input = new PassThrough({ highWaterMark: 1024 * 1024 });
  const stages: [Readable, ...Duplex[]] = [input];
  if (manifest.encryption) stages.push(engine.keyRing.decryptStream(manifest.encryption.keyId));
  const decompress = decompressionStage(manifest.compression, options.signal);
  stages.push(decompress.stream);
  const extractor = dumpDirectoryExtractor(scratch, expected);
  const signalOption = options.signal ? { signal: options.signal } : {};
  const [fed, extracted] = await Promise.allSettled([
    pipeline([copy, tap, feedWhileRead(input)], signalOption),
    Promise.all([pipeline([...stages, extractor.sink], signalOption), decompress.done]),
  ]);
  if (fed.status === 'rejected') throw fed.reason;
  assertMatches(manifest, destination.name, result());
  if (extracted.status === 'rejected') {
    const error: unknown = extracted.reason;
    if (isStorageFull(error) || error instanceof AppError) throw error;
    throw new AppError(
      'PG_RESTORE_FAILED',
      `the copy of backup ${manifest.id} in ${destination.name} could not be extracted: ${(error as Error).message}`,
      { cause: error },
    );
  }
}

/**
 * The first copy that passes every check, local first. A copy that is missing, differs from
 * the manifest, fails decryption or cannot be read is reported and the next one is tried; with
 * no good copy left, the first copy's error is the job's.
 */
export async function prepareArtifact(
  engine: EngineContext,
  manifest: BackupManifest,
  options: PrepareOptions,
): Promise<PreparedArtifact> {
  assertKeyAvailable(engine, manifest);
  const order = engine.storage.readOrder(manifest);
  if (order.length === 0) {
    throw new AppError(
      'ARTIFACT_MISSING',
      `backup ${manifest.id} has no copy in a configured destination (${manifest.copies.map((copy) => copy.destination).join(', ')})`,
    );
  }
  const failures: AppError[] = [];
  for (const { destination } of order) {
    const local = engine.storage.local;
    const inPlace =
      destination === local &&
      !manifest.encryption &&
      manifest.format !== 'directory' &&
      (!options.decompress || manifest.compression === 'none');
    try {
      if (inPlace && local) {
        // Read where it is: only its checksum needs checking, unless the caller just did.
        if (!options.hashed?.has(destination.name)) {
          const actual = await local.hashArtifact(
            manifest,
            (bytesRead) => options.onProgress?.(verifying(manifest, bytesRead)),
            options.signal,
          );
          assertMatches(manifest, destination.name, actual);
        }
        return {
          file: local.artifactPath(manifest.filename),
          compression: manifest.compression,
          destination: destination.name,
          cleanup: async () => {},
        };
      }
      return await intoScratch(engine, manifest, destination, options);
    } catch (error) {
      if (options.signal?.aborted) throw error;
      const appError = toAppError(error);
      // Another copy would meet the same missing key, or the same full scratch disk.
      if (appError.code === 'ENCRYPTION_KEY_MISSING' || appError.code === 'STORAGE_FULL') {
        throw appError;
      }
      engine.logger.warn(
        { backupId: manifest.id, destination: destination.name, code: appError.code },
        `copy not usable: ${appError.message}`,
      );
      failures.push(appError);
    }
  }
  const first = failures[0] as AppError;
  if (failures.length === 1) throw first;
  throw new AppError(
    first.code,
    `no copy of backup ${manifest.id} is usable: ${failures.map((failure) => failure.message).join('; ')}`,
    { cause: first },
  );
}

async function intoScratch(
  engine: EngineContext,
  manifest: BackupManifest,
  destination: Destination,
  options: PrepareOptions,
): Promise<PreparedArtifact> {
  // Held while the scratch file exists: a worker starting meanwhile must not sweep it away.
  const writeLock = await engine.locks.acquire(lockResources.storageWrite, 'shared', {
    timeoutMs: engine.config.LOCK_TIMEOUT_MS,
    signal: options.signal,
  });
  const scratch = engine.storage.scratchPath(manifest, 'restore');
  const cleanup = async () => {
    // Recursive: a directory-format dump is extracted into a directory.
    await rm(scratch, { force: true, recursive: true });
    await writeLock.release();
  };
  // The scratch file is in BACKUP_DIR: refused now when it surely cannot fit there.
  const where = engine.storage.catalog.where;
  try {
    assertRoom(
      `the scratch copy of backup ${manifest.id}`,
      where,
      scratchSpaceNeeded(manifest, options.decompress),
      await engine.storage.freeBytes(),
    );
    const local = engine.storage.local;
    if (manifest.directory) {
      await extractDirectoryCopy(
        engine,
        manifest,
        manifest.directory,
        destination,
        scratch,
        options,
      );
    } else if (
      destination === local &&
      !manifest.encryption &&
      options.decompress &&
      manifest.compression === 'zstd'
    ) {
      await decompressLocalZstd(manifest, local.artifactPath(manifest.filename), scratch, options);
    } else {
      await streamCopy(engine, manifest, destination, scratch, options);
    }
  } catch (error) {
    await cleanup();
    throw isStorageFull(error) ? storageFullError(where, error) : error;
  }
  return {
    file: scratch,
    compression: options.decompress || manifest.directory ? 'none' : manifest.compression,
    destination: destination.name,
    cleanup,
  };
}
