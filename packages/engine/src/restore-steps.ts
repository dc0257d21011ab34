import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { AppError, type BackupManifest, type JobProgress, parseTableName } from '@pgkeep/core';
import {
  ChildProcessError,
  countArchiveEntries,
  lockResources,
  type PgTarget,
  parseToolVersion,
  type RunningChild,
  startPgRestore,
  startPsqlScript,
} from '@pgkeep/pg';
import type pg from 'pg';
import { decompressionStage } from './compression.js';
import type { EngineContext } from './engine-context.js';

type Progress = (progress: JobProgress) => void;

function abortedError(signal: AbortSignal | undefined): AppError | undefined {
  if (!signal?.aborted) return undefined;
  const reason: unknown = signal.reason;
  if (reason instanceof AppError) return reason;
  const why = typeof reason === 'string' ? reason : ((reason as Error)?.message ?? 'cancelled');
  return new AppError('JOB_ABORTED', `interrupted: ${why}`, { retryable: true });
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  const error = abortedError(signal);
  if (error) throw error;
}

/** Turns a failure of a restore tool into a clear job error, or the abort that caused it. */
export function restoreError(error: unknown, signal: AbortSignal | undefined): AppError {
  const aborted = abortedError(signal);
  if (aborted) return aborted;
  if (error instanceof AppError) return error;
  if (error instanceof ChildProcessError) {
    return new AppError('PG_RESTORE_FAILED', error.message, { cause: error });
  }
  return new AppError('PG_RESTORE_FAILED', (error as Error).message, { cause: error });
}

/** Step 1 of every restore and verify: the artifact is exactly what was written. */
export async function verifyChecksum(
  engine: EngineContext,
  manifest: BackupManifest,
  onProgress: Progress | undefined,
  signal: AbortSignal | undefined,
): Promise<void> {
  const actual = await engine.storage.hashArtifact(
    manifest,
    (bytesRead) =>
      onProgress?.({
        phase: 'verifying',
        percent:
          manifest.size > 0 ? Math.min(99, Math.floor((bytesRead / manifest.size) * 100)) : null,
        bytesRead,
      }),
    signal,
  );
  if (actual.size !== manifest.size || actual.sha256 !== manifest.sha256) {
    throw new AppError(
      'CHECKSUM_MISMATCH',
      `backup ${manifest.id} does not match its manifest (size ${actual.size} of ${manifest.size}, sha256 ${actual.sha256.slice(0, 12)}… expected ${manifest.sha256.slice(0, 12)}…); it was not restored`,
    );
  }
}

/** pg_restore reads archives of its own major version and older, not newer. */
export function assertPgRestoreCanRead(engine: EngineContext, manifest: BackupManifest): void {
  const dumpedWith = parseToolVersion(`(PostgreSQL) ${manifest.pgDumpVersion}`);
  if (dumpedWith && dumpedWith.major > engine.pgRestore.major) {
    throw new AppError(
      'PG_RESTORE_TOO_OLD',
      `backup ${manifest.id} was made by pg_dump ${manifest.pgDumpVersion}; this worker's pg_restore is ${engine.pgRestore.version}`,
    );
  }
}

/**
 * A custom archive restores in parallel (`pg_restore -j`), which needs a seekable file: a
 * compressed artifact is first decompressed to a scratch file beside the backups.
 */
async function seekableArchive(
  engine: EngineContext,
  manifest: BackupManifest,
  signal: AbortSignal | undefined,
): Promise<{ file: string; cleanup: () => Promise<void> }> {
  if (manifest.compression === 'none') {
    return { file: `${engine.storage.dir}/${manifest.filename}`, cleanup: async () => {} };
  }
  // Held while the scratch file exists: a worker starting meanwhile must not sweep it away.
  const writeLock = await engine.locks.acquire(lockResources.storageWrite, 'shared', {
    timeoutMs: engine.config.LOCK_TIMEOUT_MS,
    signal,
  });
  const file = engine.storage.scratchPath(manifest, 'restore');
  const stage = decompressionStage(manifest.compression, signal);
  const cleanup = async () => {
    await rm(file, { force: true });
    await writeLock.release();
  };
  try {
    await pipeline(
      [
        engine.storage.openArtifact(manifest),
        stage.stream,
        createWriteStream(file, { mode: 0o600 }),
      ],
      signal ? { signal } : {},
    );
    await stage.done;
  } catch (error) {
    await cleanup();
    throw restoreError(error, signal);
  }
  return { file, cleanup };
}

/**
 * Loads a backup into `database`: custom archives with `pg_restore -j --exit-on-error`, plain
 * SQL with `psql --single-transaction -v ON_ERROR_STOP=1`. Any error stops it.
 */
export async function restoreIntoDatabase(
  engine: EngineContext,
  manifest: BackupManifest,
  database: PgTarget,
  onProgress: Progress | undefined,
  signal: AbortSignal | undefined,
): Promise<void> {
  if (manifest.format === 'custom') {
    onProgress?.({ phase: 'restoring', percent: 0 });
    const archive = await seekableArchive(engine, manifest, signal);
    try {
      const itemsTotal = await countArchiveEntries(archive.file, database);
      let itemsDone = 0;
      const restore = startPgRestore({
        target: database,
        file: archive.file,
        jobs: engine.config.RESTORE_JOBS,
        signal,
        onEntry: () => {
          itemsDone += 1;
          onProgress?.({
            phase: 'restoring',
            percent:
              itemsTotal > 0 ? Math.min(99, Math.floor((itemsDone / itemsTotal) * 100)) : null,
            itemsDone: Math.min(itemsDone, itemsTotal),
            itemsTotal,
          });
        },
      });
      await restore.done;
    } catch (error) {
      throw restoreError(error, signal);
    } finally {
      await archive.cleanup();
    }
    return;
  }
  const stage = decompressionStage(manifest.compression, signal);
  const psql = startPsqlScript(database, { signal });
  const { stdin } = psql.child;
  if (!stdin) throw new Error('psql was started without stdin');
  let bytesRead = 0;
  const source = engine.storage.openArtifact(manifest);
  source.on('data', (chunk: Buffer) => {
    bytesRead += chunk.length;
    onProgress?.({
      phase: 'restoring',
      percent:
        manifest.size > 0 ? Math.min(99, Math.floor((bytesRead / manifest.size) * 100)) : null,
      bytesRead,
    });
  });
  await awaitPsql(
    psql,
    Promise.all([pipeline([source, stage.stream, stdin], signal ? { signal } : {}), stage.done]),
    signal,
  );
}

/**
 * Waits for what feeds psql, then for psql itself. On failure psql's own exit status and
 * message win over a broken pipe's, and an abort over both.
 */
export async function awaitPsql(
  psql: RunningChild,
  feeding: Promise<unknown>,
  signal: AbortSignal | undefined,
) {
  try {
    await feeding;
    await psql.done;
  } catch (error) {
    await psql.done.catch((psqlError: unknown) => {
      throw restoreError(psqlError, signal);
    });
    throw restoreError(error, signal);
  }
}

/** Exact row counts of the manifest's tables in `client`'s database, against the manifest. */
export async function compareRowCounts(
  client: pg.ClientBase,
  expected: Record<string, number>,
): Promise<{ actual: Record<string, number>; mismatches: string[] }> {
  const actual: Record<string, number> = {};
  const mismatches: string[] = [];
  for (const [key, count] of Object.entries(expected)) {
    const table = parseTableName(key);
    const relation = `${client.escapeIdentifier(table.schema)}.${client.escapeIdentifier(table.name)}`;
    let found: number | null = null;
    try {
      const { rows } = await client.query<{ n: string }>(
        `SELECT count(*)::text AS n FROM ${relation}`,
      );
      found = Number(rows[0]?.n ?? 0);
      actual[key] = found;
    } catch {
      // a missing table counts as a mismatch below
    }
    if (found !== count) mismatches.push(`${key}: ${found ?? 'missing'} rows, expected ${count}`);
  }
  return { actual, mismatches };
}
