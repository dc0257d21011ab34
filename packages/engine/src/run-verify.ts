import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AppError, type JobPayload, type JobResult, toAppError } from '@pgkeep/core';
import {
  clientConfig,
  createRestoreDatabase,
  dropDatabaseForce,
  lockResources,
  scratchDatabaseName,
  startChild,
  withDatabase,
} from '@pgkeep/pg';
import pg from 'pg';
import { decompressionStage } from './compression.js';
import type { EngineContext, RunContext } from './engine-context.js';
import {
  compareRowCounts,
  restoreIntoDatabase,
  throwIfAborted,
  verifyChecksum,
} from './restore-steps.js';
import { maintenanceClient } from './run-restore.js';

type Check = JobResult<'verify'>['checks'][number];

/**
 * Reads the whole archive the way a restore would, writing nothing: `pg_restore -f /dev/null`
 * for custom archives (a truncated file fails here; `--list` alone reads only the TOC), and the
 * full decompression for plain SQL.
 */
async function readWholeArchive(
  engine: EngineContext,
  manifest: Parameters<typeof verifyChecksum>[1],
  signal: AbortSignal | undefined,
) {
  const stage = decompressionStage(manifest.compression, signal);
  const source = engine.storage.openArtifact(manifest);
  if (manifest.format === 'custom') {
    const reader = startChild('pg_restore', ['--file=/dev/null'], {
      env: { PATH: process.env.PATH },
      signal,
      stdin: 'pipe',
    });
    const { stdin } = reader.child;
    if (!stdin) throw new Error('pg_restore was started without stdin');
    try {
      await Promise.all([
        pipeline([source, stage.stream, stdin], signal ? { signal } : {}),
        stage.done,
      ]);
    } catch (error) {
      await reader.done; // pg_restore's own message, if it failed first
      throw error;
    }
    await reader.done;
    return;
  }
  // Read and discard: the decompressor checks the data's integrity on the way.
  const sink = new Writable({
    write(_chunk, _encoding, callback) {
      callback();
    },
  });
  await Promise.all([pipeline([source, stage.stream, sink], signal ? { signal } : {}), stage.done]);
}

export async function runVerify(
  engine: EngineContext,
  payload: JobPayload<'verify'>,
  run: RunContext,
): Promise<JobResult<'verify'>> {
  const started = Date.now();
  const manifest = await engine.storage.getManifest(payload.backupId);
  if (!manifest) throw new AppError('BACKUP_NOT_FOUND', `backup ${payload.backupId} not found`);
  // Shared with backups, excluded by a restore of the same database.
  const lock = await engine.locks.acquire(lockResources.database(manifest.database), 'shared', {
    timeoutMs: engine.config.LOCK_TIMEOUT_MS,
    signal: run.signal,
  });
  const checks: Check[] = [];
  const attempt = async (name: Check['name'], work: () => Promise<string>) => {
    try {
      checks.push({ name, ok: true, detail: await work() });
      return true;
    } catch (error) {
      throwIfAborted(run.signal);
      checks.push({ name, ok: false, detail: toAppError(error).message });
      return false;
    }
  };
  try {
    const hashed = await attempt('sha256', async () => {
      await verifyChecksum(engine, manifest, run.onProgress, run.signal);
      return `${manifest.size} bytes, sha256 matches the manifest`;
    });
    // A file that fails its checksum is not read further: nothing trusts its content.
    const read =
      hashed &&
      (await attempt('archive-read', async () => {
        run.onProgress?.({ phase: 'reading', percent: null });
        await readWholeArchive(engine, manifest, run.signal);
        return manifest.format === 'custom'
          ? 'pg_restore read every entry'
          : 'the SQL decompressed completely';
      }));
    if (read && payload.restore) {
      const scratch = scratchDatabaseName('verify', engine.config.LOCK_NAMESPACE);
      // Held while the scratch database exists, so no worker's start-up sweep drops it.
      const scratchLock = await engine.locks.acquire(lockResources.verifyScratch, 'shared', {
        timeoutMs: engine.config.LOCK_TIMEOUT_MS,
        signal: run.signal,
      });
      const admin = await maintenanceClient(engine);
      try {
        await createRestoreDatabase(admin, scratch, null);
        const restored = await attempt('scratch-restore', async () => {
          await restoreIntoDatabase(
            engine,
            manifest,
            withDatabase(engine.target, scratch),
            run.onProgress,
            run.signal,
          );
          return `restored into a scratch database`;
        });
        if (restored) {
          await attempt('row-counts', async () => {
            run.onProgress?.({ phase: 'validating', percent: null });
            const client = new pg.Client(
              clientConfig(withDatabase(engine.target, scratch), 'pgkeep-verify'),
            );
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
        }
      } finally {
        await dropDatabaseForce(admin, scratch).catch(() => {});
        await admin.end().catch(() => {});
        await scratchLock.release();
      }
    }
  } finally {
    await lock.release();
  }
  const ok = checks.every((check) => check.ok);
  run.onProgress?.({ phase: 'completed', percent: 100 });
  run.logger[ok ? 'info' : 'error'](
    { backupId: manifest.id, checks },
    ok ? 'backup verified' : 'backup failed verification',
  );
  return { backupId: manifest.id, ok, checks, durationMs: Date.now() - started };
}
