import { readFile } from 'node:fs/promises';
import { type Duplex, PassThrough, type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  AppError,
  artifactFilename,
  type BackupManifest,
  type DirectoryDump,
  databaseNameSchema,
  encryptionAlgorithm,
  isStorageFull,
  type JobPayload,
  newBackupId,
  parseTableName,
  type QualifiedTable,
  tableKey,
  toAppError,
} from '@pgkeep/core';
import {
  ChildProcessError,
  CustomArchiveRowCounter,
  clientConfig,
  countRows,
  estimateDumpBytes,
  type HeldLock,
  listUserTables,
  lockResources,
  pgDumpSupportsServer,
  type ResolvedTable,
  resolveTables,
  serverVersion,
  startPgDump,
} from '@pgkeep/pg';
import type { WrittenCopies } from '@pgkeep/storage';
import pg from 'pg';
import { takeServerSlot } from './caps.js';
import { compressionStage, zstdIntoFile, zstdReading } from './compression.js';
import { writeDirectoryBackup } from './directory-dump.js';
import type { EngineContext, RunContext } from './engine-context.js';
import { assertRoom, backupSpaceNeeded, previousOfKind } from './free-space.js';
import { pgDumpError } from './pg-dump-error.js';

type BackupPayload = JobPayload<'backup'>;

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
 * One backup: pg_dump in a snapshot exported by our own session (so the exact row counts taken
 * in that session describe the same data), through compression and sha256 into a partial file,
 * fsync, rename, and the manifest last. Any failure leaves no listed backup and every older one
 * untouched.
 */
export async function runBackup(
  engine: EngineContext,
  payload: BackupPayload,
  run: RunContext,
): Promise<BackupManifest> {
  const { config, storage, locks, target, targetInfo } = engine;
  // The manifest records the database, and a restore may be asked to recreate it by that name.
  if (!databaseNameSchema.safeParse(target.database).success) {
    throw new AppError(
      'INVALID_DATABASE_NAME',
      `cannot back up database ${JSON.stringify(target.database)}: backups need a plain database name (letters, digits, _ $ -)`,
    );
  }
  const lockOptions = { timeoutMs: config.LOCK_TIMEOUT_MS, signal: run.signal };
  run.onProgress?.({ phase: 'waiting-for-lock', percent: null });
  // The snapshot's session connects while the locks are taken: its BEGIN waits for them.
  const snapshotClient = new pg.Client(clientConfig(target, 'pgkeep-backup'));
  snapshotClient.on('error', () => {});
  const connecting = snapshotClient.connect();
  connecting.catch(() => {});
  let writeLock: HeldLock | undefined;
  let databaseLock: HeldLock | undefined;
  let slot: HeldLock | undefined;
  try {
    writeLock = await locks.acquire(lockResources.storageWrite, 'shared', lockOptions);
    databaseLock = await locks.acquire(
      lockResources.database(target.database, targetInfo.server),
      'shared',
      lockOptions,
    );
    // The server's cap last: a job never holds a slot while it waits for anything else.
    slot = await takeServerSlot(engine, run);
    // Dated from here, not from the request: a backup that waited for a restore to finish
    // holds the restored data, and its time must say so.
    const started = new Date();
    // Aborted by this job itself when a check made while pg_dump starts refuses the backup.
    const refused = new AbortController();
    const signal = AbortSignal.any(
      [run.signal, writeLock.lost, databaseLock.lost, slot.lost, refused.signal].filter(
        (s): s is AbortSignal => !!s,
      ),
    );
    run.onProgress?.({ phase: 'preparing', percent: 0 });
    try {
      await connecting;
    } catch (error) {
      throw new AppError('DATABASE_UNAVAILABLE', `cannot connect to database ${target.database}`, {
        retryable: true,
        cause: error,
      });
    }
    await snapshotClient.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const { rows } = await snapshotClient.query<{ snapshot: string }>(
      'SELECT pg_export_snapshot() AS snapshot',
    );
    const snapshot = rows[0]?.snapshot;
    const server = await serverVersion(snapshotClient);
    if (!pgDumpSupportsServer(engine.pgDump.major, server.num)) {
      throw new AppError(
        'PG_DUMP_FAILED',
        `pg_dump ${engine.pgDump.version} is older than the server (${server.version}); install pg_dump ${Math.floor(server.num / 10_000)} or newer`,
      );
    }
    const tables: ResolvedTable[] | null = payload.tables
      ? await resolveTables(snapshotClient, payload.tables)
      : null;
    const excluded =
      !tables && payload.excludeTables
        ? await existingTables(snapshotClient, payload.excludeTables)
        : [];
    const excludedKeys = new Set(excluded.map(tableKey));
    // Rows are counted where they live: a partitioned table's are its partitions' (listed with
    // it), so none is counted twice. A full backup's list holds no partitioned table either.
    const countedTables = async (): Promise<QualifiedTable[]> =>
      tables?.filter((table) => !table.partitioned) ??
      (await listUserTables(snapshotClient)).filter((table) => !excludedKeys.has(tableKey(table)));

    const id = newBackupId(started);
    const encryption =
      engine.keyRing.writeKeyId && targetInfo.settings.encryption
        ? engine.keyRing.encryptStream()
        : null;
    const filename = artifactFilename(id, payload.format, payload.compression, !!encryption);
    const log = run.logger.child({ backupId: id });
    log.info({ tables: tables?.map(tableKey) ?? 'all', format: payload.format }, 'backup started');

    // ── Directory format (pg_dump --jobs into a scratch directory, then one tar): its own
    // module, directory-dump.ts. The stream below is the custom and plain formats' path. ──
    if (payload.format === 'directory') {
      const counted = await countedTables();
      const estimate = await estimateDumpBytes(snapshotClient, tables);
      const written = await writeDirectoryBackup(engine, run, {
        payload,
        id,
        filename,
        snapshot,
        tables,
        excludeTables: excluded,
        estimate,
        previous: previousOfKind((await storage.listManifests()).manifests, {
          database: target.database,
          tables: tables ? tables.map(tableKey) : null,
          format: payload.format,
          compression: payload.compression,
        }),
        encryption,
        signal,
        countRows: () => countRows(snapshotClient, counted),
      });
      await snapshotClient.query('COMMIT');
      const manifest = await commitBackup(engine, run, {
        payload,
        started,
        id,
        filename,
        tables,
        excluded,
        serverVersion: server.version,
        encryption,
        artifact: written.artifact,
        rowCounts: written.rowCounts,
        directory: written.directory,
      });
      const { bytesRead, artifact } = written;
      run.onProgress?.({
        phase: 'completed',
        percent: 100,
        bytesRead,
        bytesWritten: artifact.size,
      });
      return manifest;
    }

    // Where this process reads pg_dump's output anyway (gzip, none), a custom archive's COPY
    // data gives the exact row counts as it passes: no second scan of every table. Where zstd
    // reads pg_dump's pipe itself (the fast path), passing the archive through this process
    // would cost more CPU than the count(*) it saves (2-3 s against 0.2-0.5 s a run at scale
    // 0.3, bench/experiments/row-count-cost.ts), so there, as for plain SQL, the rows are
    // counted in the dump's snapshot while it streams.
    const readsArchive = payload.format === 'custom' && payload.compression !== 'zstd';
    // pg_dump starts now: it spends its first tenths of a second reading the catalog, which
    // is when the checks below run. Nothing is written before they pass.
    const dump = startPgDump({
      target,
      format: payload.format,
      tables,
      excludeTables: excluded,
      snapshot,
      signal,
      readHere: readsArchive,
    });
    let estimate = 0;
    let counted: QualifiedTable[];
    try {
      counted = await countedTables();
      estimate = await estimateDumpBytes(snapshotClient, tables);
      const local = storage.local;
      if (local) {
        // Refused before a byte is written when it surely cannot fit (see free-space.ts).
        const previous = previousOfKind((await storage.listManifests()).manifests, {
          database: target.database,
          tables: tables ? tables.map(tableKey) : null,
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
    } catch (error) {
      refused.abort(error);
      await dump.done.catch(() => {});
      throw error;
    }
    const { stdout } = dump.child;
    if (!stdout) throw new Error('pg_dump was started without a stdout pipe');
    let bytesRead = 0;
    let bytesWritten = 0;
    const spawnedMs = run.startedAt === undefined ? undefined : Date.now() - run.startedAt;
    let firstByteMs: number | undefined;
    const report = () =>
      run.onProgress?.({
        ...(firstByteMs === undefined ? {} : { firstByteMs }),
        phase: 'dumping',
        // The dump of a database is smaller than its files (no indexes), so this stays below
        // 100 until the end; it is an estimate, capped at 99 until the manifest is written.
        percent: estimate > 0 ? Math.min(99, Math.floor((bytesRead / estimate) * 100)) : null,
        bytesRead,
        bytesWritten,
      });
    let stages: [Readable, ...Duplex[]] | null = null;
    let compressed: Promise<void> = Promise.resolve();
    let onWritten: () => void = () => {};
    const counter = readsArchive ? new CustomArchiveRowCounter() : null;
    // The common case, local disk only, unencrypted zstd: zstd writes the file itself, as the
    // raw pipeline does; this process only hashes it behind zstd.
    const direct = payload.compression === 'zstd' && !encryption && storage.localOnly;
    const progressFromProc = () => {
      let lastRead = 0;
      return () => {
        const now = Date.now();
        if (now - lastRead < 500) return;
        lastRead = now;
        void bytesWrittenBy(dump.child.pid).then((written) => {
          if (written !== undefined) bytesRead = written;
          report();
        });
      };
    };
    const firstByte = () => {
      if (firstByteMs === undefined && run.startedAt !== undefined) {
        firstByteMs = Date.now() - run.startedAt;
        report();
      }
    };
    if (direct || payload.compression === 'zstd') {
      // zstd reads pg_dump's pipe: its first write shows in /proc/<pid>/io (libpq's socket
      // sends do not count there), looked at every 10 ms until it comes.
      const watch = setInterval(() => {
        if (firstByteMs !== undefined || signal.aborted) {
          clearInterval(watch);
          return;
        }
        void bytesWrittenBy(dump.child.pid).then((written) => {
          if (written) firstByte();
        });
      }, 10);
      watch.unref();
      void dump.done.finally(() => clearInterval(watch)).catch(() => {});
    }
    if (direct) {
      onWritten = progressFromProc();
    } else if (payload.compression === 'zstd') {
      // pg_dump | zstd through a kernel pipe; what pg_dump has written so far is read from
      // /proc for the progress, at most twice a second.
      const zstd = zstdReading(stdout, config.BACKUP_ZSTD_LEVEL, signal);
      stages = [zstd.output];
      compressed = zstd.done;
      onWritten = progressFromProc();
    } else {
      const compressor = compressionStage(
        payload.compression,
        { zstd: config.BACKUP_ZSTD_LEVEL, gzip: config.BACKUP_GZIP_LEVEL },
        signal,
      );
      const countInput = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          if (bytesRead === 0) firstByte();
          counter?.push(chunk);
          bytesRead += chunk.length;
          report();
          callback(null, chunk);
        },
      });
      stages = [stdout, countInput, compressor.stream];
      compressed = compressor.done;
      onWritten = () => {};
    }
    // Otherwise counted while pg_dump streams, in the same snapshot, so the counts match the
    // dump's data.
    const counting = counter ? null : countRows(snapshotClient, counted);
    counting?.catch(() => {});

    // Encryption, when configured, is the last stage: every destination gets the same bytes.
    let source: Readable | null = null;
    if (stages && stages.length === 1 && !encryption) {
      source = stages[0];
    } else if (stages) {
      const tail: Duplex = encryption ? encryption.stream : new PassThrough();
      pipeline([...stages, tail]).catch((error: unknown) => tail.destroy(error as Error));
      source = tail;
    }

    let rowCounts: Record<string, number> = {};
    let artifact: WrittenCopies;
    const writeOptions = {
      signal,
      sizeHint: estimate,
      onBytes: (written: number) => {
        bytesWritten = written;
        onWritten();
      },
      // Before anything is visible: a pg_dump that failed halfway closes its stdout like one
      // that finished, so its exit status decides whether the file may become an artifact.
      beforeCommit: async () => {
        await dump.done;
        await compressed;
        rowCounts = counting
          ? await counting
          : await rowsFromArchive(counter, snapshotClient, counted, log);
      },
    };
    try {
      artifact = source
        ? await storage.writeCopies(filename, source, writeOptions)
        : await storage.writeLocalFrom(
            filename,
            (fd) => {
              compressed = zstdIntoFile(stdout, config.BACKUP_ZSTD_LEVEL, fd, signal);
              return compressed;
            },
            writeOptions,
          );
    } catch (error) {
      if (signal.aborted) {
        const reason: unknown = signal.reason;
        if (reason instanceof AppError) throw reason;
        const why =
          typeof reason === 'string' ? reason : ((reason as Error)?.message ?? 'cancelled');
        throw new AppError('JOB_ABORTED', `backup interrupted: ${why}`, { retryable: true });
      }
      // A full disk is the cause whatever pg_dump or zstd made of it (a broken pipe).
      if (isStorageFull(error)) throw toAppError(error);
      if (error instanceof ChildProcessError && error.command === 'zstd') {
        throw new AppError('COMPRESSION_FAILED', error.message, { cause: error });
      }
      // pg_dump's own failure says more than the broken pipe it caused; but a pg_dump that
      // only failed to write (its reader, a copy, went away first) hides the real cause.
      const dumpFailure = await dump.done.then(
        () => undefined,
        (dumpError: unknown) => dumpError,
      );
      if (dumpFailure !== undefined && !failedToWrite(dumpFailure)) throw pgDumpError(dumpFailure);
      if (error instanceof AppError) throw error;
      if (error instanceof ChildProcessError) throw pgDumpError(error);
      throw new AppError(
        'STORAGE_ERROR',
        `the backup could not be written: ${(error as Error).message}`,
        {
          retryable: true,
          cause: error,
        },
      );
    }
    await snapshotClient.query('COMMIT');
    const manifest = await commitBackup(engine, run, {
      payload,
      started,
      id,
      filename,
      tables,
      excluded,
      serverVersion: server.version,
      encryption,
      artifact,
      rowCounts,
      timings: { spawnedMs, firstByteMs },
    });
    bytesRead = (await bytesWrittenBy(dump.child.pid)) ?? bytesRead;
    run.onProgress?.({ phase: 'completed', percent: 100, bytesRead, bytesWritten });
    return manifest;
  } finally {
    // The server's slot first: closing the snapshot's session is no dump, and the next backup
    // waiting for the slot should not wait for it.
    const slotReleasedAt = await slot?.release();
    await snapshotClient.end().catch(() => {});
    if (slot && slotReleasedAt) {
      // The evidence that the server's cap held: each holder's interval, in one log line.
      run.logger.info(
        {
          slot: slot.resource,
          acquiredAt: slot.acquiredAt.toISOString(),
          releasedAt: slotReleasedAt.toISOString(),
          waitedMs: slot.waitedMs,
        },
        'server slot released',
      );
    }
    await databaseLock?.release();
    await writeLock?.release();
  }
}

interface DumpWritten {
  payload: BackupPayload;
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
async function commitBackup(
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

/**
 * The tables of `names` that exist: a table the target's configuration leaves out may not exist
 * (yet, or any more) in every database a discovery target covers.
 */
async function existingTables(client: pg.Client, names: string[]): Promise<QualifiedTable[]> {
  const all = await listUserTables(client);
  const wanted = new Set(names.map((name) => tableKey(parseTableName(name))));
  return all.filter((table) => wanted.has(tableKey(table)));
}
