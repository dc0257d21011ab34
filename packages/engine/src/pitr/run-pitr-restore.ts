import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import {
  AppError,
  type ArchivedWal,
  type BaseBackupManifest,
  type JobPayload,
  type JobResult,
  type Logger,
  type RecoverableWindow,
  toAppError,
} from '@pgkeep/core';
import type { HeldLock, PgTarget } from '@pgkeep/pg';
import pg from 'pg';
import type { EngineContext, RunContext } from '../engine-context.js';
import { assertRoom } from '../free-space.js';
import { runBackup } from '../run-backup.js';
import { runRestore } from '../run-restore.js';
import { pitrOverview } from './overview.js';
import { archiveLockResource } from './pitr-cleanup.js';
import type { PitrContext } from './run-basebackup.js';
import { instanceUser, scratchLockResource, TemporaryInstance } from './temporary-instance.js';
import { isSegmentName, parseSegmentName } from './wal-position.js';

/**
 * Where `time` stands against the window: the error a request for it gets, or undefined when a
 * restore can reach it. `latest` needs a window that ends somewhere.
 */
export function pointInTimeProblem(
  time: string,
  window: RecoverableWindow,
  now: Date = new Date(),
): AppError | undefined {
  const details = { window: { from: window.from, to: window.to, gaps: window.gaps } };
  if (window.from === null || window.to === null) {
    return new AppError(
      'PITR_TIME_OUTSIDE_WINDOW',
      'nothing can be restored to a point in time yet: the archive has no base backup with all the WAL it needs',
      { details },
    );
  }
  if (time === 'latest') return undefined;
  const at = Date.parse(time);
  if (at > now.getTime()) {
    return new AppError('PITR_TIME_IN_FUTURE', `${time} is in the future`, { details });
  }
  if (at < Date.parse(window.from) || at > Date.parse(window.to)) {
    return new AppError(
      'PITR_TIME_OUTSIDE_WINDOW',
      `${time} is outside the recoverable window (${window.from} to ${window.to})`,
      { details },
    );
  }
  const gap = window.gaps.find(
    (candidate) =>
      candidate.from !== null &&
      at > Date.parse(candidate.from) &&
      (candidate.to === null || at < Date.parse(candidate.to)),
  );
  if (gap) {
    return new AppError(
      'PITR_TIME_IN_GAP',
      `${time} falls in a gap of the archive (${gap.from} to ${gap.to ?? 'the next base backup'}: WAL after ${gap.afterSegment} is missing)`,
      { details },
    );
  }
  return undefined;
}

/** The newest base backup a recovery to `time` can start from (it ends before `time`). */
export function baseBackupFor(
  time: string,
  manifests: readonly BaseBackupManifest[],
  window: RecoverableWindow,
): BaseBackupManifest | undefined {
  const at = time === 'latest' ? Number.POSITIVE_INFINITY : Date.parse(time);
  return [...manifests]
    .filter((manifest) => manifest.timeline === window.timeline)
    .filter((manifest) => Date.parse(manifest.stopTime) <= at)
    .sort((a, b) => Date.parse(b.stopTime) - Date.parse(a.stopTime))[0];
}

/** Segments from the base backup's start to the one that covers `time` (an estimate of the work). */
function segmentsNeeded(
  base: BaseBackupManifest,
  archived: readonly ArchivedWal[],
  time: string,
): number {
  const start = parseSegmentName(base.startSegment, base.walSegmentSize).segno;
  const at = time === 'latest' ? Number.POSITIVE_INFINITY : Date.parse(time);
  const segments = archived
    .filter((entry) => isSegmentName(entry.name))
    .map((entry) => ({ entry, segno: parseSegmentName(entry.name, base.walSegmentSize).segno }))
    .filter((segment) => segment.segno >= start)
    .sort((a, b) => (a.segno < b.segno ? -1 : 1));
  const covering = segments.findIndex(
    (segment) =>
      segment.entry.coveredUntil !== null && Date.parse(segment.entry.coveredUntil) >= at,
  );
  return covering === -1 ? segments.length : covering + 1;
}

/**
 * Point-in-time restore of one database. The newest base backup that ends before the requested
 * time is fetched (sha256 checked, decrypted) into a scratch directory and recovered by a
 * temporary instance of the worker's own, fed the archived WAL (each file checked against its
 * sha256) and promoted at the target time. The one database is dumped from it as a backup of
 * the target (type `pitr`, exact row counts from the dump's snapshot), the instance and its
 * directory go, and the existing restore takes it from there: temporary database, checks, swap,
 * the old database kept. Nothing of the live server changes before that swap.
 */
export async function runPitrRestore(
  engine: EngineContext,
  pitr: PitrContext,
  payload: JobPayload<'pitr-restore'>,
  run: RunContext,
): Promise<JobResult<'pitr-restore'>> {
  const { config, locks } = engine;
  const started = Date.now();
  const earlier = (await run.earlierResult?.()) as JobResult<'pitr-restore'> | undefined;
  if (earlier) return earlier;
  if (!engine.targetInfo.settings.restoreEnabled) {
    throw new AppError(
      'RESTORE_DISABLED',
      `restores of target ${engine.targetInfo.name} are disabled (restore: false)`,
    );
  }
  const database = engine.target.database;
  const held: HeldLock[] = [];
  let instance: TemporaryInstance | undefined;
  const lockOptions = { timeoutMs: config.LOCK_TIMEOUT_MS, signal: run.signal };
  let dump: Awaited<ReturnType<typeof runBackup>> | undefined;
  let fetchMs = 0;
  let recoveryMs = 0;
  let dumpMs = 0;
  let recoveredTo: string | null = null;
  let walFiles = 0;
  let walBytes = 0;
  let baseBackupId = '';
  const lockAcquiredAt = new Date();
  try {
    run.onProgress?.({ phase: 'waiting-for-lock', percent: null });
    // Shared: a clean-up of the archive waits until the files this restore reads are read.
    held.push(await locks.acquire(archiveLockResource(pitr.server.name), 'shared', lockOptions));
    const { manifests } = await pitr.archive.baseBackups();
    const catalog = await pitr.archive.archived();
    // As the API judged the request: a quiet server's window reaches to when the receiver last
    // saw nothing new to archive.
    const window = await pitrOverview(
      pitr.archive,
      pitr.server,
      await pitr.receiverStatus().catch(() => null),
    );
    const problem = pointInTimeProblem(payload.pointInTime, window);
    if (problem) throw problem;
    const base = baseBackupFor(payload.pointInTime, manifests, window);
    if (!base) {
      throw new AppError(
        'PITR_TIME_OUTSIDE_WINDOW',
        `no base backup ends before ${payload.pointInTime}`,
      );
    }
    baseBackupId = base.id;
    const log = run.logger.child({ baseBackupId: base.id, pointInTime: payload.pointInTime });
    const major = Math.floor(base.serverVersionNum / 10_000);
    const user = await instanceUser(config.PITR_INSTANCE_USER);
    const scratchRoot = config.PITR_SCRATCH_DIR ?? os.tmpdir();
    await fs.mkdir(scratchRoot, { recursive: true });
    const needed = segmentsNeeded(base, [...catalog.values()], payload.pointInTime);
    // The extracted cluster, the WAL staged for it as it is replayed, and room to replay it.
    const room =
      base.tarSize + 2 * base.walSegmentSize + Math.min(needed, 64) * base.walSegmentSize;
    const space = await fs.statfs(scratchRoot);
    assertRoom('this point-in-time restore', scratchRoot, room, space.bavail * space.bsize);

    instance = await TemporaryInstance.create(scratchRoot, user, major, log);
    held.push(await locks.acquire(scratchLockResource(instance.dir), 'exclusive', lockOptions));
    await instance.mark(config.LOCK_NAMESPACE);

    run.onProgress?.({ phase: 'fetching-base', percent: 0, bytesRead: 0 });
    const fetchStarted = Date.now();
    await instance.extract(
      await openBaseBackup(pitr, base, log),
      base,
      base.encryption ? pitr.keyRing.decryptStream(base.encryption.keyId) : null,
      run.signal,
    );
    fetchMs = Date.now() - fetchStarted;
    log.info({ ms: fetchMs, bytes: base.tarSize }, 'base backup extracted');

    const recoveryStarted = Date.now();
    await instance.configure({
      target: { time: payload.pointInTime === 'latest' ? null : payload.pointInTime },
      socket: path.join(instance.dir, 'wal-fetch.sock'),
      script: path.join(instance.dir, 'wal-fetch.cjs'),
    });
    const report = () =>
      run.onProgress?.({
        phase: 'recovering',
        percent: needed > 0 ? Math.min(99, Math.floor((walFiles / needed) * 100)) : null,
        itemsDone: walFiles,
        itemsTotal: needed,
      });
    report();
    await instance.start(pitr.archive, catalog, () => {
      walFiles += 1;
      report();
    });
    const user0 = decodeURIComponent(new URL(pitr.server.url).username || 'postgres');
    let progress: Awaited<ReturnType<TemporaryInstance['waitForPromotion']>>;
    try {
      progress = await instance.waitForPromotion(user0, run.signal, report);
    } catch (error) {
      // PostgreSQL stops at a target time only on the first transaction after it: when the
      // archive holds none (the time is near the window's end), recovery runs out of WAL
      // before "reaching" the target. Every transaction up to that time is archived (it is
      // inside the window), so the archive's end is the database as it was then.
      if (
        payload.pointInTime === 'latest' ||
        !(error instanceof AppError) ||
        !/recovery ended before configured recovery target was reached/.test(error.message)
      ) {
        throw error;
      }
      log.info('no transaction after the target time in the archive: recovering to its end');
      await instance.configure({
        target: { time: null },
        socket: path.join(instance.dir, 'wal-fetch.sock'),
        script: path.join(instance.dir, 'wal-fetch.cjs'),
      });
      instance.startPostmaster();
      progress = await instance.waitForPromotion(user0, run.signal, report);
    }
    recoveredTo = progress.replayedAt;
    walFiles = instance.fetchStats.files;
    walBytes = instance.fetchStats.bytes;
    recoveryMs = Date.now() - recoveryStarted;
    log.info({ ms: recoveryMs, walFiles, recoveredTo }, 'temporary instance recovered');

    // The dump: as a backup of the target, taken from the instance by a superuser of it.
    const superuser = await superuserOf(instance, user0);
    const source: PgTarget = {
      host: instance.socketDir,
      port: instance.port,
      user: superuser,
      password: undefined,
      database,
      sslmode: undefined,
    };
    const exists = await databaseExists(source, pitr.server.maintenanceDatabase);
    if (!exists) {
      throw new AppError(
        'PITR_RECOVERY_FAILED',
        `database ${database} did not exist at ${payload.pointInTime}: nothing was changed`,
      );
    }
    const dumpStarted = Date.now();
    dump = await runBackup(
      { ...engine, target: source },
      {
        tables: null,
        format: 'custom',
        jobs: null,
        compression: 'zstd',
        label: `pitr ${payload.pointInTime}`,
        type: 'pitr',
        excludeTables: null,
        targetName: engine.targetInfo.name,
        requestedBy: payload.requestedBy,
        requestedAt: payload.requestedAt,
      },
      { ...run, earlierResult: undefined },
    );
    dumpMs = Date.now() - dumpStarted;
  } finally {
    await instance?.stop().catch((error: unknown) => {
      run.logger.error({ err: error }, 'temporary instance not stopped cleanly');
    });
    for (const lock of held.reverse()) await lock.release().catch(() => {});
  }

  if (!dump) throw new AppError('INTERNAL_ERROR', 'the recovered database was not dumped');
  const backup = dump;
  // The existing restore: its own locks, temporary database, checks, swap, old database kept.
  const restoreStarted = Date.now();
  let restored: JobResult<'restore'>;
  try {
    restored = await runRestore(
      engine,
      {
        backupId: backup.id,
        target: payload.target,
        targetName: payload.targetName,
        requestedBy: payload.requestedBy,
        requestedAt: payload.requestedAt,
      },
      { ...run, earlierResult: undefined },
    );
  } finally {
    if (!payload.keepDump) {
      await engine.storage.deleteBackup(backup).catch((error: unknown) => {
        run.logger.warn(
          { err: error, backupId: backup.id },
          'the dump of the recovered database was not removed',
        );
      });
    }
  }
  const restoreMs = Date.now() - restoreStarted;
  return {
    pointInTime: payload.pointInTime,
    recoveredTo,
    baseBackupId,
    database,
    target: payload.target,
    walFilesFetched: walFiles,
    walBytesFetched: walBytes,
    backupId: payload.keepDump ? backup.id : null,
    previousDatabase: restored.previousDatabase,
    rowCounts: restored.rowCounts,
    phases: { fetchMs, recoveryMs, dumpMs, restoreMs },
    downtimeMs: restored.downtimeMs,
    durationMs: Date.now() - started,
    lock: {
      waitedMs: restored.lock.waitedMs,
      acquiredAt: lockAcquiredAt.toISOString(),
      releasedAt: restored.lock.releasedAt,
    },
  };
}

/**
 * The base backup's first copy that opens, the local one first: a copy missing from one
 * destination (a lost disk, a file removed) is read from the next.
 */
async function openBaseBackup(
  pitr: PitrContext,
  base: BaseBackupManifest,
  log: Logger,
): Promise<Readable> {
  const destinations = base.copies
    .map((copy) => pitr.archive.store.destination(copy.destination))
    .filter((destination) => destination !== undefined)
    .sort((a, b) => Number(b.kind === 'local') - Number(a.kind === 'local'));
  let last: unknown;
  for (const destination of destinations) {
    try {
      return await destination.openArtifact(base.filename);
    } catch (error) {
      last = error;
      log.warn(
        { destination: destination.name, err: toAppError(error).message },
        'base backup copy not readable: trying the next one',
      );
    }
  }
  throw new AppError(
    'ARTIFACT_MISSING',
    `base backup ${base.id} has no readable copy${last ? `: ${toAppError(last).message}` : ''}`,
  );
}

async function superuserOf(instance: TemporaryInstance, user: string): Promise<string> {
  const client = new pg.Client(instance.connection(user));
  client.on('error', () => {});
  await client.connect();
  try {
    const { rows } = await client.query<{ name: string }>(
      'SELECT rolname AS name FROM pg_roles WHERE rolsuper AND rolcanlogin ORDER BY oid LIMIT 1',
    );
    return rows[0]?.name ?? user;
  } finally {
    await client.end().catch(() => {});
  }
}

async function databaseExists(target: PgTarget, maintenance: string): Promise<boolean> {
  const client = new pg.Client({
    host: target.host,
    port: target.port,
    user: target.user,
    database: maintenance,
  });
  client.on('error', () => {});
  await client.connect();
  try {
    const { rows } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [
      target.database,
    ]);
    return rows.length > 0;
  } finally {
    await client.end().catch(() => {});
  }
}
