import { randomBytes } from 'node:crypto';
import { AppError, type BackupManifest, type JobPayload, type JobResult } from '@pgkeep/core';
import {
  COUNTING_SESSION_SETTINGS,
  clientConfig,
  createRestoreDatabase,
  databaseExists,
  dropDatabaseForce,
  lockResources,
  scratchDatabaseName,
  swapDatabases,
  withDatabase,
} from '@pgkeep/pg';
import pg from 'pg';
import { type PreparedArtifact, prepareArtifact } from './artifact-source.js';
import { destructiveSlots, serverSlots } from './caps.js';
import type { EngineContext, RunContext } from './engine-context.js';
import { HeldLocks } from './held-locks.js';
import { temporaryDatabaseLoadSettings } from './load-settings.js';
import { assertPgRestoreCanRead, restoreIntoDatabase, throwIfAborted } from './restore-steps.js';
import { restoreTables } from './restore-tables.js';
import { assertRestoreStillWanted } from './restore-window.js';
import { type CheckedRowCounts, rowCountsDuringLoad } from './row-counts-during-load.js';

/** `<db>_pre_restore_<when>_<rand>`, cut to PostgreSQL's 63-byte limit on the db side. */
export function previousDatabaseName(target: string, now: Date = new Date()): string {
  const stamp = now
    .toISOString()
    .replace(/[-:TZ.]/g, '')
    .slice(0, 14);
  const suffix = `_pre_restore_${stamp}_${randomBytes(2).toString('hex')}`;
  return `${target.slice(0, 63 - suffix.length)}${suffix}`;
}

export async function maintenanceClient(
  engine: Pick<EngineContext, 'maintenance'>,
): Promise<pg.Client> {
  const client = new pg.Client(clientConfig(engine.maintenance, 'pgkeep-restore'));
  client.on('error', () => {});
  await client.connect();
  return client;
}

/**
 * Full restore: verify, load into a fresh temporary database, check row counts, then swap it
 * in. The target stays untouched and online until the swap; any failure before it drops the
 * temporary database and leaves the target exactly as it was.
 */
async function restoreDatabase(
  engine: EngineContext,
  manifest: BackupManifest,
  artifact: PreparedArtifact,
  target: string,
  run: RunContext,
  signal: AbortSignal,
  beforeSwap: () => void,
) {
  const temporary = scratchDatabaseName('restore', engine.config.LOCK_NAMESPACE);
  const admin = await maintenanceClient(engine);
  try {
    const targetExists = await databaseExists(admin, target);
    await createRestoreDatabase(admin, temporary, targetExists ? target : null);
    let swapped = false;
    try {
      const into = withDatabase(engine.target, temporary);
      // The rows are counted on a session of their own, each table as soon as it is loaded;
      // it ends before the swap, which renames the database.
      const counting = await rowCountsDuringLoad(
        async () => {
          const check = new pg.Client(
            clientConfig(into, 'pgkeep-restore', COUNTING_SESSION_SETTINGS),
          );
          check.on('error', () => {});
          await check.connect();
          return check;
        },
        manifest,
        artifact.file,
        run.logger,
      );
      let counts: CheckedRowCounts;
      try {
        // Settings a live database could not take; safe here, see temporaryDatabaseLoadSettings.
        await restoreIntoDatabase(engine, manifest, artifact, into, {
          onProgress: run.onProgress,
          signal,
          settings: temporaryDatabaseLoadSettings(engine.config),
          onItemFinished: (dumpId) => counting.itemFinished(dumpId),
        });
        throwIfAborted(signal);
        run.onProgress?.({ phase: 'validating', percent: null });
        counts = await counting.check();
      } finally {
        await counting.close();
      }
      run.logger.debug(
        {
          tables: Object.keys(manifest.rowCounts).length,
          countedDuringLoad: counts.countedDuringLoad.length,
        },
        'row counts checked',
      );
      if (counts.mismatches.length > 0) {
        throw new AppError(
          'ROW_COUNT_MISMATCH',
          `restored data does not match the backup: ${counts.mismatches.join('; ')}`,
        );
      }
      throwIfAborted(signal);
      beforeSwap();

      run.onProgress?.({ phase: 'swapping', percent: 99 });
      const swap = await swapDatabases(admin, {
        target,
        temporary,
        previous: previousDatabaseName(target),
        namespace: engine.config.LOCK_NAMESPACE,
      });
      swapped = true;
      run.logger.info(
        {
          target,
          previousDatabase: swap.previousDatabase,
          downtimeMs: swap.downtimeMs,
          terminatedSessions: swap.terminatedSessions,
        },
        'restored database swapped in',
      );
      return {
        previousDatabase: swap.previousDatabase,
        downtimeMs: swap.downtimeMs,
        rowCounts: counts.actual,
      };
    } finally {
      if (!swapped) await dropDatabaseForce(admin, temporary).catch(() => {});
    }
  } finally {
    await admin.end().catch(() => {});
  }
}

export async function runRestore(
  engine: EngineContext,
  payload: JobPayload<'restore'>,
  run: RunContext,
): Promise<JobResult<'restore'>> {
  const { config, locks, targetInfo } = engine;
  if (!targetInfo.settings.restoreEnabled) {
    throw new AppError(
      'RESTORE_DISABLED',
      targetInfo.name === 'default'
        ? 'restores are disabled (RESTORE_ENABLED=false)'
        : `restores of target ${targetInfo.name} are disabled (restore: false)`,
    );
  }
  if (payload.target === engine.maintenance.database || /^template[01]$/.test(payload.target)) {
    throw new AppError('INVALID_DATABASE_NAME', `cannot restore into ${payload.target}`);
  }
  const started = Date.now();
  run.onProgress?.({ phase: 'waiting-for-lock', percent: null });
  const held = new HeldLocks(locks, { timeoutMs: config.LOCK_TIMEOUT_MS, signal: run.signal });
  try {
    // Destructive: one of the DESTRUCTIVE_CONCURRENCY slots, and no delete, clean-up or other
    // restore of this database. The database lock exclusively: no backup or verify of it
    // meanwhile. The backup's lock shared: nothing deletes it while it is read. The server's
    // cap last, so no slot is held while waiting for anything else.
    const destructive = await held.takeAny(destructiveSlots(config));
    await held.take(
      lockResources.destructiveDatabase(targetInfo.server, payload.target),
      'exclusive',
    );
    await held.take(lockResources.database(payload.target, targetInfo.server), 'exclusive');
    await held.take(lockResources.backup(payload.backupId), 'shared');
    run.onProgress?.({
      phase: 'waiting-for-slot',
      percent: null,
      waitingFor: `server:${targetInfo.server}`,
    });
    await held.takeAny(serverSlots(targetInfo.server, targetInfo.maxConcurrentJobs));
    // Under the lock: a first run of this job that finished meanwhile is not done twice.
    const earlier = (await run.earlierResult?.()) as JobResult<'restore'> | undefined;
    if (earlier) {
      run.logger.warn(
        { previousDatabase: earlier.previousDatabase },
        'restore already done by an earlier run of this job',
      );
      return earlier;
    }
    const window = config.RESTORE_RETRY_WINDOW_MS;
    assertRestoreStillWanted(payload, run, window, 'start');
    const signal = held.signal();
    const manifest = await engine.storage.getManifest(payload.backupId);
    if (!manifest) throw new AppError('BACKUP_NOT_FOUND', `backup ${payload.backupId} not found`);
    assertPgRestoreCanRead(engine, manifest);
    run.onProgress?.({ phase: 'verifying', percent: 0 });
    // Checksum (and authentication, when encrypted) of the first good copy, before anything
    // of it reaches pg_restore or psql.
    const artifact = await prepareArtifact(engine, manifest, {
      // A custom archive is read by pg_restore from a plain file (it seeks, and reads it whole).
      decompress: manifest.format === 'custom',
      onProgress: run.onProgress,
      signal,
    });
    let outcome: Awaited<ReturnType<typeof restoreDatabase>>;
    try {
      throwIfAborted(signal);
      run.logger.info(
        {
          backupId: manifest.id,
          target: payload.target,
          tables: manifest.tables ?? 'all',
          copy: artifact.destination,
        },
        'restore started',
      );
      outcome =
        manifest.tables === null
          ? await restoreDatabase(engine, manifest, artifact, payload.target, run, signal, () =>
              assertRestoreStillWanted(payload, run, window, 'swap'),
            )
          : await restoreTables(engine, manifest, artifact, payload.target, run, signal);
    } finally {
      await artifact.cleanup();
    }
    run.onProgress?.({ phase: 'completed', percent: 100 });
    return {
      backupId: manifest.id,
      target: payload.target,
      mode: manifest.tables === null ? 'database' : 'tables',
      ...outcome,
      durationMs: Date.now() - started,
      lock: {
        waitedMs: destructive.waitedMs,
        acquiredAt: destructive.acquiredAt.toISOString(),
        // Taken before the locks go: the next holder's acquiredAt comes after it.
        releasedAt: new Date().toISOString(),
      },
    };
  } finally {
    await held.releaseAll();
  }
}
