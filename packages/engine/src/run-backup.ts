import {
  AppError,
  artifactFilename,
  type BackupManifest,
  databaseNameSchema,
  type JobPayload,
  newBackupId,
  tableKey,
} from '@pgkeep/core';
import {
  COUNTING_SESSION_SETTINGS,
  clientConfig,
  countRows,
  estimateDumpBytes,
  type HeldLock,
  lockResources,
} from '@pgkeep/pg';
import pg from 'pg';
import { commitBackup } from './backup-commit.js';
import { openBackupSnapshot } from './backup-snapshot.js';
import { dumpStream, type StreamJob } from './backup-stream.js';
import { takeServerSlot } from './caps.js';
import { writeDirectoryBackup } from './directory-dump.js';
import type { EngineContext, RunContext } from './engine-context.js';
import { previousOfKind } from './free-space.js';

type BackupPayload = JobPayload<'backup'>;

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
  const { config, locks, target, targetInfo } = engine;
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
  const snapshotClient = new pg.Client(
    clientConfig(target, 'pgkeep-backup', COUNTING_SESSION_SETTINGS),
  );
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
    const snapshot = await openBackupSnapshot(engine, snapshotClient, connecting, payload);
    const id = newBackupId(started);
    const encryption =
      engine.keyRing.writeKeyId && targetInfo.settings.encryption
        ? engine.keyRing.encryptStream()
        : null;
    const filename = artifactFilename(id, payload.format, payload.compression, !!encryption);
    const log = run.logger.child({ backupId: id });
    log.info(
      { tables: snapshot.tables?.map(tableKey) ?? 'all', format: payload.format },
      'backup started',
    );
    const job = { engine, run, payload, filename, encryption, signal, refused, log };
    // Directory format: pg_dump --jobs into a scratch directory, then one tar
    // (directory-dump.ts). Custom and plain: pg_dump's stdout streamed (backup-stream.ts).
    const written =
      payload.format === 'directory'
        ? await dumpDirectory({ ...job, id, client: snapshotClient, snapshot })
        : await dumpStream({ ...job, client: snapshotClient, snapshot });
    await snapshotClient.query('COMMIT');
    const manifest = await commitBackup(engine, run, {
      payload,
      started,
      id,
      filename,
      tables: snapshot.tables,
      excluded: snapshot.excluded,
      serverVersion: snapshot.serverVersion,
      encryption,
      artifact: written.artifact,
      rowCounts: written.rowCounts,
      directory: 'directory' in written ? written.directory : undefined,
      timings: 'timings' in written ? written.timings : undefined,
    });
    run.onProgress?.({
      phase: 'completed',
      percent: 100,
      bytesRead: written.bytesRead,
      bytesWritten: 'bytesWritten' in written ? written.bytesWritten : written.artifact.size,
    });
    return manifest;
  } finally {
    // All at once, each lock's unlock sent without waiting for another session to close (about
    // 10 ms each): the server's slot first, which the next backup may be waiting for.
    const [slotReleasedAt] = await Promise.all([
      slot?.release(),
      snapshotClient.end().catch(() => {}),
      databaseLock?.release(),
      writeLock?.release(),
    ]);
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
  }
}

/**
 * The directory format's dump (directory-dump.ts), with the row counts of the snapshot's
 * session and the room it needs checked there.
 */
async function dumpDirectory(
  job: Omit<StreamJob, 'refused'> & { id: string },
): Promise<Awaited<ReturnType<typeof writeDirectoryBackup>>> {
  const { engine, payload, snapshot, client } = job;
  const { storage, target } = engine;
  const counted = await snapshot.countedTables();
  const estimate = await estimateDumpBytes(client, snapshot.tables);
  return writeDirectoryBackup(engine, job.run, {
    payload,
    id: job.id,
    filename: job.filename,
    snapshot: snapshot.snapshot,
    tables: snapshot.tables,
    excludeTables: snapshot.excluded,
    estimate,
    previous: previousOfKind((await storage.listManifests()).manifests, {
      database: target.database,
      tables: snapshot.tables ? snapshot.tables.map(tableKey) : null,
      format: payload.format,
      compression: payload.compression,
    }),
    encryption: job.encryption,
    signal: job.signal,
    countRows: () => countRows(client, counted),
  });
}
