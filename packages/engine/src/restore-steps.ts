import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { AppError, type BackupManifest, type JobProgress, parseTableName } from '@pgkeep/core';
import {
  ChildProcessError,
  countArchiveEntries,
  countTableRows,
  type PgTarget,
  parseToolVersion,
  type RunningChild,
  type SessionSettings,
  startPgRestore,
  startPsqlScript,
} from '@pgkeep/pg';
import type pg from 'pg';
import type { PreparedArtifact } from './artifact-source.js';
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

export interface LoadOptions {
  onProgress?: Progress | undefined;
  signal?: AbortSignal | undefined;
  /** pg_restore -j finished (committed) the archive entry `dumpId`. */
  onItemFinished?: ((dumpId: number) => void) | undefined;
  /** Settings of the loading sessions (see temporaryDatabaseLoadSettings); none by default. */
  settings?: SessionSettings | undefined;
}

/**
 * Loads a backup into `database`: custom archives and directory-format dumps with
 * `pg_restore -j --exit-on-error`, plain
 * SQL with `psql --single-transaction -v ON_ERROR_STOP=1`. Any error stops it.
 */
export async function restoreIntoDatabase(
  engine: EngineContext,
  manifest: BackupManifest,
  artifact: PreparedArtifact,
  database: PgTarget,
  { onProgress, signal, settings, onItemFinished }: LoadOptions = {},
): Promise<void> {
  // A custom archive file, or a directory-format dump's extracted directory: pg_restore -j.
  if (manifest.format !== 'plain') {
    onProgress?.({ phase: 'restoring', percent: 0 });
    if (artifact.compression !== 'none') {
      throw new Error('pg_restore -j needs the archive decompressed first');
    }
    try {
      const itemsTotal = await countArchiveEntries(artifact.file, database);
      let itemsDone = 0;
      const restore = startPgRestore({
        target: database,
        file: artifact.file,
        jobs: engine.config.RESTORE_JOBS,
        signal,
        settings,
        onItemFinished,
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
    }
    return;
  }
  const stage = decompressionStage(artifact.compression, signal);
  const psql = startPsqlScript(database, { signal, settings });
  const { stdin } = psql.child;
  if (!stdin) throw new Error('psql was started without stdin');
  let bytesRead = 0;
  const source = createReadStream(artifact.file);
  const total = (await stat(artifact.file)).size;
  source.on('data', (chunk: Buffer | string) => {
    bytesRead += chunk.length;
    onProgress?.({
      phase: 'restoring',
      percent: total > 0 ? Math.min(99, Math.floor((bytesRead / total) * 100)) : null,
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

/**
 * Exact row counts of the manifest's tables in `client`'s database, against the manifest;
 * `known` holds counts already taken there (RowCountsDuringLoad), the rest are counted now.
 */
export async function compareRowCounts(
  client: pg.ClientBase,
  expected: Record<string, number>,
  known: Record<string, number> = {},
): Promise<{ actual: Record<string, number>; mismatches: string[] }> {
  const actual: Record<string, number> = {};
  const mismatches: string[] = [];
  for (const [key, count] of Object.entries(expected)) {
    let found: number | null = Object.hasOwn(known, key) ? (known[key] as number) : null;
    try {
      found ??= await countTableRows(client, parseTableName(key));
      actual[key] = found;
    } catch {
      // a missing table counts as a mismatch below
    }
    if (found !== count) mismatches.push(`${key}: ${found ?? 'missing'} rows, expected ${count}`);
  }
  return { actual, mismatches };
}
