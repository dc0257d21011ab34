import { readFile } from 'node:fs/promises';
import { type Duplex, type Readable, Transform } from 'node:stream';
import {
  AppError,
  isStorageFull,
  type JobPayload,
  type QualifiedTable,
  tableKey,
  toAppError,
} from '@pgkeep/core';
import {
  ChildProcessError,
  CustomArchiveRowCounter,
  countRows,
  estimateDumpBytes,
  type RunningChild,
  startPgDump,
} from '@pgkeep/pg';
import type { KeyRing, WrittenCopies } from '@pgkeep/storage';
import type pg from 'pg';
import type { BackupSnapshot } from './backup-snapshot.js';
import { compressionStage, joinStages, zstdIntoFile, zstdReading } from './compression.js';
import type { EngineContext, RunContext } from './engine-context.js';
import { assertRoom, backupSpaceNeeded, previousOfKind } from './free-space.js';
import { pgDumpError } from './pg-dump-error.js';

/**
 * The custom and plain formats' path: pg_dump's stdout through compression (and encryption)
 * into every destination, hashed on the way, with the exact row counts of the dump's snapshot.
 * Its stages, in order: start pg_dump and check for room while it reads the catalog
 * (`startDump`); choose how the bytes flow (`dataPath`); write and commit the artifact
 * (`writeArtifact`), turning a failure into the error that names its cause (`writeFailure`).
 */
export interface StreamJob {
  engine: EngineContext;
  run: RunContext;
  payload: JobPayload<'backup'>;
  filename: string;
  encryption: ReturnType<KeyRing['encryptStream']> | null;
  /** The job's signal, which includes `refused`. */
  signal: AbortSignal;
  /** Aborted when a check made while pg_dump starts refuses the backup. */
  refused: AbortController;
  /** The session that exported the snapshot; counts rows in it. */
  client: pg.Client;
  snapshot: BackupSnapshot;
  log: RunContext['logger'];
}

export interface StreamWritten {
  artifact: WrittenCopies;
  rowCounts: Record<string, number>;
  bytesRead: number;
  bytesWritten: number;
  /** From the job's start: pg_dump started, and its first byte came (ms). */
  timings: { spawnedMs?: number | undefined; firstByteMs?: number | undefined };
}

export async function dumpStream(job: StreamJob): Promise<StreamWritten> {
  const started = await startDump(job);
  const progress = new DumpProgress(job.run, started.estimate);
  const path = dataPath(job, started, progress);
  const artifact = await writeArtifact(job, started, path, progress);
  progress.bytesRead = (await bytesWrittenBy(started.dump.child.pid)) ?? progress.bytesRead;
  return {
    artifact,
    rowCounts: path.rowCounts,
    bytesRead: progress.bytesRead,
    bytesWritten: progress.bytesWritten,
    timings: { spawnedMs: started.spawnedMs, firstByteMs: progress.firstByteMs },
  };
}

interface StartedDump {
  dump: RunningChild;
  stdout: Readable;
  counted: QualifiedTable[];
  estimate: number;
  /** This process reads the archive (gzip, none): its COPY data gives the row counts. */
  readsArchive: boolean;
  spawnedMs: number | undefined;
}

/**
 * pg_dump starts at once: it spends its first tenths of a second reading the catalog, which
 * is when the tables to count, the size estimate and the room on disk are looked up. A backup
 * that surely cannot fit is refused (pg_dump stopped) before a byte is written.
 */
async function startDump(job: StreamJob): Promise<StartedDump> {
  const { engine, payload, snapshot, client } = job;
  const { storage, target } = engine;
  // Where this process reads pg_dump's output anyway (gzip, none), a custom archive's COPY
  // data gives the exact row counts as it passes: no second scan of every table. Where zstd
  // reads pg_dump's pipe itself (the fast path), passing the archive through this process
  // would cost more CPU than the count(*) it saves (2-3 s against 0.2-0.5 s a run at scale
  // 0.3, bench/experiments/row-count-path.ts), so there, as for plain SQL, the rows are
  // counted in the dump's snapshot while it streams.
  const readsArchive = payload.format === 'custom' && payload.compression !== 'zstd';
  const dump = startPgDump({
    target,
    format: payload.format,
    tables: snapshot.tables,
    excludeTables: snapshot.excluded,
    snapshot: snapshot.snapshot,
    signal: job.signal,
    readHere: readsArchive,
  });
  const spawnedMs = job.run.startedAt === undefined ? undefined : Date.now() - job.run.startedAt;
  try {
    const counted = await snapshot.countedTables();
    const estimate = await estimateDumpBytes(client, snapshot.tables);
    const local = storage.local;
    if (local) {
      // Refused before a byte is written when it surely cannot fit (see free-space.ts).
      const previous = previousOfKind((await storage.listManifests()).manifests, {
        database: target.database,
        tables: snapshot.tables ? snapshot.tables.map(tableKey) : null,
        format: payload.format,
        compression: payload.compression,
      });
      assertRoom(
        'this backup',
        local.where,
        backupSpaceNeeded(estimate, payload.compression, previous),
        await local.freeBytes(),
      );
    }
    const { stdout } = dump.child;
    if (!stdout) throw new Error('pg_dump was started without a stdout pipe');
    return { dump, stdout, counted, estimate, readsArchive, spawnedMs };
  } catch (error) {
    job.refused.abort(error);
    await dump.done.catch(() => {});
    throw error;
  }
}

/** What the job's progress says while pg_dump streams. */
class DumpProgress {
  bytesRead = 0;
  bytesWritten = 0;
  firstByteMs: number | undefined;

  constructor(
    private readonly run: RunContext,
    private readonly estimate: number,
  ) {}

  report(): void {
    const { bytesRead, bytesWritten, estimate } = this;
    this.run.onProgress?.({
      ...(this.firstByteMs === undefined ? {} : { firstByteMs: this.firstByteMs }),
      phase: 'dumping',
      // The dump of a database is smaller than its files (no indexes), so this stays below
      // 100 until the end; it is an estimate, capped at 99 until the manifest is written.
      percent: estimate > 0 ? Math.min(99, Math.floor((bytesRead / estimate) * 100)) : null,
      bytesRead,
      bytesWritten,
    });
  }

  firstByte(): void {
    if (this.firstByteMs === undefined && this.run.startedAt !== undefined) {
      this.firstByteMs = Date.now() - this.run.startedAt;
      this.report();
    }
  }

  /** What pg_dump has written so far, from /proc, at most twice a second (a kernel pipe). */
  fromProc(pid: number | undefined): () => void {
    let lastRead = 0;
    return () => {
      const now = Date.now();
      if (now - lastRead < 500) return;
      lastRead = now;
      void bytesWrittenBy(pid).then((written) => {
        if (written !== undefined) this.bytesRead = written;
        this.report();
      });
    };
  }

  /**
   * pg_dump's first byte where zstd reads its pipe: its first write shows in /proc/<pid>/io
   * (libpq's socket sends do not count there), looked at every 10 ms until it comes.
   */
  watchFirstByte(dump: RunningChild, signal: AbortSignal): void {
    const watch = setInterval(() => {
      if (this.firstByteMs !== undefined || signal.aborted) {
        clearInterval(watch);
        return;
      }
      void bytesWrittenBy(dump.child.pid).then((written) => {
        if (written) this.firstByte();
      });
    }, 10);
    watch.unref();
    void dump.done.finally(() => clearInterval(watch)).catch(() => {});
  }
}

interface DataPath {
  /** The bytes to store; null: zstd writes the local file itself (`intoFile`). */
  source: Readable | null;
  intoFile: (fd: number) => Promise<void>;
  /** The compressor ended well (set once it runs). */
  compressed: () => Promise<void>;
  onWritten: () => void;
  /** Filled by `writeArtifact` just before the artifact is committed. */
  rowCounts: Record<string, number>;
  countRows: () => Promise<Record<string, number>>;
}

/**
 * How the bytes flow. Local disk only, unencrypted zstd: zstd reads pg_dump's pipe and writes
 * the file itself, as the raw pipeline does; this process only hashes the file behind it.
 * zstd for copies or encryption: zstd reads pg_dump's pipe, this process reads zstd. gzip or
 * none: this process reads pg_dump (and counts a custom archive's rows on the way).
 * Encryption, when on, is the last stage: every destination gets the same bytes.
 */
function dataPath(job: StreamJob, started: StartedDump, progress: DumpProgress): DataPath {
  const { engine, payload, encryption, signal } = job;
  const { config, storage } = engine;
  const { dump, stdout } = started;
  const counter = started.readsArchive ? new CustomArchiveRowCounter() : null;
  let compressed: Promise<void> = Promise.resolve();
  let stages: [Readable, ...Duplex[]] | null = null;
  let onWritten: () => void = () => {};
  const direct = payload.compression === 'zstd' && !encryption && storage.localOnly;
  if (payload.compression === 'zstd') {
    progress.watchFirstByte(dump, signal);
    onWritten = progress.fromProc(dump.child.pid);
    if (!direct) {
      const zstd = zstdReading(stdout, config.BACKUP_ZSTD_LEVEL, signal);
      stages = [zstd.output];
      compressed = zstd.done;
    }
  } else {
    const compressor = compressionStage(
      payload.compression,
      { zstd: config.BACKUP_ZSTD_LEVEL, gzip: config.BACKUP_GZIP_LEVEL },
      signal,
    );
    const countInput = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        if (progress.bytesRead === 0) progress.firstByte();
        counter?.push(chunk);
        progress.bytesRead += chunk.length;
        progress.report();
        callback(null, chunk);
      },
    });
    stages = [stdout, countInput, compressor.stream];
    compressed = compressor.done;
  }
  // Counted while pg_dump streams, in the same snapshot, so the counts match the dump's data.
  const counting = counter ? null : countRows(job.client, started.counted);
  counting?.catch(() => {});

  const source = stages ? joinStages(stages, encryption) : null;
  return {
    source,
    intoFile: (fd) => {
      compressed = zstdIntoFile(stdout, config.BACKUP_ZSTD_LEVEL, fd, signal);
      return compressed;
    },
    compressed: () => compressed,
    onWritten,
    rowCounts: {},
    countRows: () => counting ?? rowsFromArchive(counter, job.client, started.counted, job.log),
  };
}

/**
 * The artifact written to every destination (or by zstd into the local file), committed only
 * once pg_dump and the compressor exited well and the rows are counted: a pg_dump that failed
 * halfway closes its stdout like one that finished.
 */
async function writeArtifact(
  job: StreamJob,
  started: StartedDump,
  path: DataPath,
  progress: DumpProgress,
): Promise<WrittenCopies> {
  const { storage } = job.engine;
  const writeOptions = {
    signal: job.signal,
    sizeHint: started.estimate,
    onBytes: (written: number) => {
      progress.bytesWritten = written;
      path.onWritten();
    },
    beforeCommit: async () => {
      await started.dump.done;
      await path.compressed();
      path.rowCounts = await path.countRows();
    },
  };
  try {
    return path.source
      ? await storage.writeCopies(job.filename, path.source, writeOptions)
      : await storage.writeLocalFrom(job.filename, path.intoFile, writeOptions);
  } catch (error) {
    throw await writeFailure(error, job.signal, started.dump);
  }
}

/** The error that names why writing the backup failed. */
async function writeFailure(
  error: unknown,
  signal: AbortSignal,
  dump: RunningChild,
): Promise<unknown> {
  if (signal.aborted) {
    const reason: unknown = signal.reason;
    if (reason instanceof AppError) return reason;
    const why = typeof reason === 'string' ? reason : ((reason as Error)?.message ?? 'cancelled');
    return new AppError('JOB_ABORTED', `backup interrupted: ${why}`, { retryable: true });
  }
  // A full disk is the cause whatever pg_dump or zstd made of it (a broken pipe).
  if (isStorageFull(error)) return toAppError(error);
  if (error instanceof ChildProcessError && error.command === 'zstd') {
    return new AppError('COMPRESSION_FAILED', error.message, { cause: error });
  }
  // pg_dump's own failure says more than the broken pipe it caused; but a pg_dump that only
  // failed to write (its reader, a copy, went away first) hides the real cause.
  const dumpFailure = await dump.done.then(
    () => undefined,
    (dumpError: unknown) => dumpError,
  );
  if (dumpFailure !== undefined && !failedToWrite(dumpFailure)) return pgDumpError(dumpFailure);
  if (error instanceof AppError) return error;
  if (error instanceof ChildProcessError) return pgDumpError(error);
  return new AppError(
    'STORAGE_ERROR',
    `the backup could not be written: ${(error as Error).message}`,
    {
      retryable: true,
      cause: error,
    },
  );
}

/** Bytes a live process has written so far (Linux: /proc/<pid>/io), if it can be read. */
async function bytesWrittenBy(pid: number | undefined): Promise<number | undefined> {
  if (pid === undefined) return undefined;
  try {
    const io = await readFile(`/proc/${pid}/io`, 'utf8');
    const match = /^wchar:\s*(\d+)$/m.exec(io);
    return match?.[1] ? Number(match[1]) : undefined;
  } catch {
    return undefined; // gone, or not Linux
  }
}

/** pg_dump stopped only because what read its output went away (a copy or disk failed). */
function failedToWrite(error: unknown): boolean {
  return (
    error instanceof ChildProcessError &&
    (error.signalName === 'SIGPIPE' ||
      /could not write to output file|broken pipe/i.test(error.stderrTail))
  );
}

/**
 * Each counted table's rows, from the archive's COPY data. A table with no data block in the
 * archive, or an archive the reader could not follow, is counted in the dump's snapshot
 * instead (still open): the counts stay exact either way, only slower.
 */
async function rowsFromArchive(
  counter: CustomArchiveRowCounter | null,
  client: pg.Client,
  counted: readonly QualifiedTable[],
  log: RunContext['logger'],
): Promise<Record<string, number>> {
  const result = counter?.result();
  if (!result?.ok) {
    log.warn(
      { reason: result?.reason ?? 'no archive' },
      'row counts taken by count(*): the archive could not be read',
    );
    return countRows(client, counted);
  }
  const counts: Record<string, number> = {};
  const missing: QualifiedTable[] = [];
  for (const table of counted) {
    const found = result.rows.get(tableKey(table));
    if (found) counts[tableKey(table)] = found.rows;
    else missing.push(table);
  }
  if (missing.length > 0) {
    log.warn(
      { tables: missing.map(tableKey) },
      'row counts taken by count(*): no data in the archive for these tables',
    );
    Object.assign(counts, await countRows(client, missing));
  }
  return counts;
}
