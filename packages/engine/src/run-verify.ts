import { createReadStream } from 'node:fs';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  AppError,
  type BackupManifest,
  type JobPayload,
  type JobResult,
  toAppError,
} from '@pgkeep/core';
import {
  COUNTING_SESSION_SETTINGS,
  clientConfig,
  createRestoreDatabase,
  dropDatabaseForce,
  lockResources,
  runChild,
  scratchDatabaseName,
  startChild,
  withDatabase,
} from '@pgkeep/pg';
import pg from 'pg';
import { hashCopy, type PreparedArtifact, prepareArtifact } from './artifact-source.js';
import { takeServerSlot } from './caps.js';
import { decompressionStage } from './compression.js';
import type { EngineContext, RunContext } from './engine-context.js';
import { feedWhileRead } from './feed-while-read.js';
import { HeldLocks } from './held-locks.js';
import { compareRowCounts, restoreIntoDatabase, throwIfAborted } from './restore-steps.js';
import { maintenanceClient } from './run-restore.js';

type Check = JobResult<'verify'>['checks'][number];

/** What pg_dump writes at the end of every plain dump (only `\unrestrict` may follow it). */
const PLAIN_DUMP_END = '\n-- PostgreSQL database dump complete\n';
const PLAIN_DUMP_TAIL_BYTES = 1024;

/**
 * Reads the whole archive the way a restore would, writing nothing: `pg_restore -f /dev/null`
 * for custom archives (a truncated file fails here; `--list` alone reads only the TOC), and the
 * full decompression for plain SQL, which must end with pg_dump's closing comment.
 */
async function readWholeArchive(
  manifest: BackupManifest,
  artifact: PreparedArtifact,
  signal: AbortSignal | undefined,
) {
  if (manifest.format !== 'plain' && artifact.compression === 'none') {
    // A plain archive file, or a directory-format dump's extracted directory (whose every data
    // file pg_restore reads): pg_restore reads it itself (through a pipe, it may stop before the
    // archive's last bytes and leave the writer with a broken pipe).
    await runChild('pg_restore', ['--file=/dev/null', artifact.file], {
      env: { PATH: process.env.PATH },
      signal,
    });
    return;
  }
  const stage = decompressionStage(artifact.compression, signal);
  const source = createReadStream(artifact.file);
  if (manifest.format === 'custom') {
    const reader = startChild('pg_restore', ['--file=/dev/null'], {
      env: { PATH: process.env.PATH },
      signal,
      stdin: 'pipe',
    });
    const { stdin } = reader.child;
    if (!stdin) throw new Error('pg_restore was started without stdin');
    // The whole decompressed archive goes through (pg_restore may stop reading before its
    // end: see feed-while-read.ts); pg_restore's exit status and the decompressor's are the
    // verdict, pg_restore's first, as it names what it could not read.
    const [fed, read] = await Promise.allSettled([
      Promise.all([
        pipeline([source, stage.stream, feedWhileRead(stdin)], signal ? { signal } : {}),
        stage.done,
      ]),
      reader.done,
    ]);
    if (read.status === 'rejected') throw read.reason;
    if (fed.status === 'rejected') throw fed.reason;
    return;
  }
  // Read and discard, keeping the end: the decompressor checks the data's integrity on the
  // way, and the SQL must end as pg_dump ends every dump (an uncompressed file cut short, or
  // recompressed after the cut, has nothing else that would tell).
  let tail = Buffer.alloc(0);
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      tail = Buffer.concat([tail, chunk]).subarray(-PLAIN_DUMP_TAIL_BYTES);
      callback();
    },
  });
  await Promise.all([pipeline([source, stage.stream, sink], signal ? { signal } : {}), stage.done]);
  if (!tail.toString('utf8').includes(PLAIN_DUMP_END)) {
    throw new Error("the SQL stops before pg_dump's closing comment: the dump is incomplete");
  }
}

/** The newest completed backup a schedule counts (manual or scheduled). */
async function latestBackupId(engine: EngineContext): Promise<string> {
  const { manifests } = await engine.storage.listManifests();
  const newest = manifests.find(
    (manifest) => manifest.type === 'manual' || manifest.type === 'scheduled',
  );
  if (!newest) throw new AppError('BACKUP_NOT_FOUND', 'there is no backup to verify yet');
  return newest.id;
}

type Attempt = (name: Check['name'], work: () => Promise<string>) => Promise<boolean>;

/** Restores into a scratch database and compares row counts; the scratch database is dropped. */
async function scratchRestore(
  engine: EngineContext,
  manifest: BackupManifest,
  artifact: PreparedArtifact,
  run: RunContext,
  attempt: Attempt,
) {
  const scratch = scratchDatabaseName('verify', engine.config.LOCK_NAMESPACE);
  // Held while the scratch database exists, so no worker's start-up sweep drops it.
  const scratchLock = await engine.locks.acquire(lockResources.verifyScratch, 'shared', {
    timeoutMs: engine.config.LOCK_TIMEOUT_MS,
    signal: run.signal,
  });
  const slot = await takeServerSlot(engine, run).catch(async (error: unknown) => {
    await scratchLock.release();
    throw error;
  });
  const admin = await maintenanceClient(engine);
  try {
    await createRestoreDatabase(admin, scratch, null);
    const into = withDatabase(engine.target, scratch);
    const restored = await attempt('scratch-restore', async () => {
      await restoreIntoDatabase(engine, manifest, artifact, into, {
        onProgress: run.onProgress,
        signal: run.signal,
      });
      return 'restored into a scratch database';
    });
    if (!restored) return;
    await attempt('row-counts', async () => {
      run.onProgress?.({ phase: 'validating', percent: null });
      const client = new pg.Client(clientConfig(into, 'pgkeep-verify', COUNTING_SESSION_SETTINGS));
      client.on('error', () => {});
      await client.connect();
      try {
        const { mismatches } = await compareRowCounts(client, manifest.rowCounts);
        if (mismatches.length > 0) throw new Error(mismatches.join('; '));
      } finally {
        await client.end().catch(() => {});
      }
      return `${Object.keys(manifest.rowCounts).length} tables match the manifest's row counts`;
    });
  } finally {
    await dropDatabaseForce(admin, scratch).catch(() => {});
    await admin.end().catch(() => {});
    await slot.release();
    await scratchLock.release();
  }
}

export async function runVerify(
  engine: EngineContext,
  payload: JobPayload<'verify'>,
  run: RunContext,
): Promise<JobResult<'verify'>> {
  const started = Date.now();
  const backupId = payload.backupId === 'latest' ? await latestBackupId(engine) : payload.backupId;
  const held = new HeldLocks(engine.locks, {
    timeoutMs: engine.config.LOCK_TIMEOUT_MS,
    signal: run.signal,
  });
  const checks: Check[] = [];
  const attempt: Attempt = async (name, work) => {
    try {
      checks.push({ name, ok: true, detail: await work() });
      return true;
    } catch (error) {
      throwIfAborted(run.signal);
      checks.push({ name, ok: false, detail: toAppError(error).message });
      return false;
    }
  };
  let manifest: BackupManifest | undefined;
  try {
    // The backup's lock shared: no clean-up or delete removes it while it is read.
    await held.take(lockResources.backup(backupId), 'shared');
    manifest = await engine.storage.getManifest(backupId);
    if (!manifest) throw new AppError('BACKUP_NOT_FOUND', `backup ${backupId} not found`);
    const verified = manifest;
    // Shared with backups, excluded by a restore of the same database.
    await held.take(lockResources.database(verified.database, engine.targetInfo.server), 'shared');
    // Every copy this deployment can reach, each read whole against the manifest.
    const readable = new Set(engine.storage.readOrder(verified).map((entry) => entry.destination));
    const hashed = new Set<string>();
    for (const copy of verified.copies) {
      const destination = engine.storage.destination(copy.destination);
      const matched = await attempt('sha256', async () => {
        if (!destination || !readable.has(destination)) {
          throw new Error(`${copy.destination}: not a configured destination; copy not checked`);
        }
        await hashCopy(verified, destination, run.onProgress, run.signal);
        return `${copy.destination}: ${verified.size} bytes, sha256 matches the manifest`;
      });
      if (matched) hashed.add(copy.destination);
    }
    let artifact: PreparedArtifact | undefined;
    try {
      // A copy that fails its checksum is not read further: nothing trusts its content. When
      // encrypted, every chunk is authenticated here, before any of it reaches pg_restore.
      const read = await attempt('archive-read', async () => {
        run.onProgress?.({ phase: 'reading', percent: null });
        // A local copy that has just matched is read where it is, without hashing it again.
        artifact = await prepareArtifact(engine, verified, {
          decompress: verified.format === 'custom' && payload.restore,
          signal: run.signal,
          hashed,
        });
        await readWholeArchive(verified, artifact, run.signal);
        const how =
          verified.format === 'plain'
            ? 'the SQL decompressed completely'
            : verified.format === 'directory'
              ? 'the tar extracted as recorded; pg_restore read every entry'
              : 'pg_restore read every entry';
        return verified.encryption
          ? `${artifact.destination}: every chunk authenticated; ${how}`
          : `${artifact.destination}: ${how}`;
      });
      if (read && artifact && payload.restore) {
        await scratchRestore(engine, verified, artifact, run, attempt);
      }
    } finally {
      await (artifact as PreparedArtifact | undefined)?.cleanup();
    }
  } finally {
    await held.releaseAll();
  }
  const failed = checks.filter((check) => !check.ok);
  const result = { backupId, ok: failed.length === 0, checks, durationMs: Date.now() - started };
  await run.recordVerification?.(result).catch((error: unknown) => {
    run.logger.warn({ err: error, backupId }, 'could not record the verify outcome');
  });
  if (failed.length > 0) {
    // A bad backup is a failed job: the file will not get better, so it is never retried.
    throw new AppError(
      'VERIFY_FAILED',
      `backup ${backupId} failed verification: ${failed.map((check) => `${check.name}: ${check.detail}`).join('; ')}`,
      { details: result },
    );
  }
  run.onProgress?.({ phase: 'completed', percent: 100 });
  run.logger.info({ backupId, checks }, 'backup verified');
  return result;
}
