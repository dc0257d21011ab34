import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  AppError,
  type BaseBackupManifest,
  baseBackupFilename,
  type Config,
  encryptionAlgorithm,
  type JobPayload,
  type Logger,
  newBackupId,
  type ServerSettings,
  toAppError,
} from '@pgkeep/core';
import {
  type AdvisoryLocks,
  ChildProcessError,
  clientConfig,
  findPgProgram,
  type HeldLock,
  libpqEnv,
  runChild,
  startChild,
} from '@pgkeep/pg';
import type { KeyRing, WrittenCopies } from '@pgkeep/storage';
import pg from 'pg';
import tar from 'tar-stream';
import { serverSlots } from '../caps.js';
import { compressionStage, decompressionStage } from '../compression.js';
import type { RunContext } from '../engine-context.js';
import { assertRoom } from '../free-space.js';
import { serverConnection } from '../target-registry.js';
import { checkPitrRequirements } from './requirements.js';
import type { WalArchive } from './wal-archive.js';
import { parseLsn, segmentName, segmentOf } from './wal-position.js';
import type { ReceiverStatus } from './wal-receiver.js';

/** What server-level jobs (base backups, the archive's clean-up) need. */
export interface PitrContext {
  config: Config;
  logger: Logger;
  locks: AdvisoryLocks;
  keyRing: KeyRing;
  server: ServerSettings;
  archive: WalArchive;
  /** What the server's WAL receiver last published (null: none runs now). */
  receiverStatus: () => Promise<ReceiverStatus | null>;
}

/** Files of the tar stream read on the way: small, and all a manifest needs. */
const WANTED = new Set(['backup_label', 'backup_manifest', 'global/pg_control']);
const MAX_WANTED_BYTES = 64 * 1024 * 1024;

/**
 * Passes the tar stream on unchanged while tar-stream reads its headers beside it, keeping the
 * few files the manifest needs. Everything else is skipped as it streams by.
 */
function tarReader(): { tap: Transform; files: Map<string, Buffer>; finished: Promise<void> } {
  const files = new Map<string, Buffer>();
  const extract = tar.extract();
  extract.on('entry', (header, stream, next) => {
    const name = header.name.replace(/^\.\//, '');
    if (!WANTED.has(name) || (header.size ?? 0) > MAX_WANTED_BYTES) {
      stream.on('end', () => next());
      stream.resume();
      return;
    }
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: unknown) => chunks.push(chunk as Buffer));
    stream.on('end', () => {
      files.set(name, Buffer.concat(chunks));
      next();
    });
  });
  const finished = new Promise<void>((resolve, reject) => {
    extract.once('finish', resolve);
    extract.once('error', reject);
  });
  finished.catch(() => {});
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      if (extract.write(chunk)) callback(null, chunk);
      else extract.once('drain', () => callback(null, chunk));
    },
    flush(callback) {
      extract.end(undefined);
      callback();
    },
  });
  return { tap, files, finished };
}

interface WalRange {
  timeline: number;
  startLsn: string;
  stopLsn: string;
}

/** The WAL range the base backup needs, from its backup_manifest (`WAL-Ranges`). */
function walRangeOf(manifestText: string): WalRange {
  const manifest = JSON.parse(manifestText) as {
    'WAL-Ranges'?: { Timeline: number; 'Start-LSN': string; 'End-LSN': string }[];
  };
  const ranges = manifest['WAL-Ranges'] ?? [];
  const first = ranges[0];
  const last = ranges[ranges.length - 1];
  if (!first || !last) throw new Error('backup_manifest has no WAL-Ranges');
  return { timeline: last.Timeline, startLsn: first['Start-LSN'], stopLsn: last['End-LSN'] };
}

function baseBackupError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  if (error instanceof ChildProcessError) {
    const transient = /could not connect|connection to server|server closed|terminat/i;
    return new AppError('PG_BASEBACKUP_FAILED', error.message, {
      retryable: error.signalName === null && transient.test(error.stderrTail),
      cause: error,
    });
  }
  return toAppError(error);
}

async function serverNow(client: pg.Client): Promise<Date> {
  const { rows } = await client.query<{ now: Date }>('SELECT clock_timestamp() AS now');
  return rows[0]?.now ?? new Date();
}

/**
 * Extracts the stored base backup (read back from its first copy, decrypted and decompressed)
 * into a scratch directory and runs pg_verifybackup on it: every file against the backup's own
 * manifest. The WAL is not in the backup (it is in the archive), so it is not parsed here.
 */
async function verifyStored(
  context: PitrContext,
  filename: string,
  encryptionKeyId: string | null,
  id: string,
  major: number | undefined,
  signal: AbortSignal | undefined,
): Promise<void> {
  const verifier = findPgProgram('pg_verifybackup', major);
  if (!verifier) {
    throw new AppError(
      'PITR_UNAVAILABLE',
      `pg_verifybackup${major ? ` ${major}` : ''} is not installed: install it, or take base backups with verify off`,
    );
  }
  const scratch = path.join(context.archive.catalogDir, '..', `verify-${id}`);
  await fs.mkdir(scratch, { recursive: true, mode: 0o700 });
  try {
    const destination = context.archive.store.local ?? context.archive.store.destinations[0];
    if (!destination) throw new Error('no destination');
    const stored = await destination.openArtifact(filename);
    const untar = startChild('tar', ['--extract', '--file', '-', '--directory', scratch], {
      env: { PATH: process.env.PATH },
      signal,
      stdin: 'pipe',
    });
    const decompress = decompressionStage('zstd', signal);
    const stages: (Readable | Transform)[] = [stored];
    if (encryptionKeyId) stages.push(context.keyRing.decryptStream(encryptionKeyId));
    const stdin = untar.child.stdin;
    if (!stdin) throw new Error('tar was started without stdin');
    await Promise.all([
      pipeline([...stages, decompress.stream, stdin] as unknown as [Readable, Transform]),
      decompress.done,
      untar.done,
    ]);
    await runChild(verifier, ['--no-parse-wal', '--quiet', scratch], {
      env: { PATH: process.env.PATH },
      signal,
    });
  } catch (error) {
    const detail =
      error instanceof ChildProcessError
        ? error.stderrTail || error.message
        : toAppError(error).message;
    throw new AppError(
      'BASEBACKUP_VERIFY_FAILED',
      `the base backup did not verify: ${detail.slice(0, 1000)}`,
      { cause: error },
    );
  } finally {
    await fs.rm(scratch, { recursive: true, force: true });
  }
}

/**
 * One base backup of a server: `pg_basebackup -Ft -D - -X none` (the WAL comes from the
 * archive) through zstd and sha256 (and encryption) into every destination of the server's
 * archive, read back and checked with pg_verifybackup, and only then listed, with a manifest
 * that says which cluster, timeline and WAL range it needs.
 */
export async function runBaseBackup(
  context: PitrContext,
  payload: JobPayload<'basebackup'>,
  run: RunContext,
): Promise<BaseBackupManifest> {
  const { config, server, archive, locks } = context;
  const pitr = server.pitr;
  if (!pitr) {
    throw new AppError('PITR_NOT_ENABLED', `server ${server.name} has no point-in-time recovery`);
  }
  const earlier = (await run.earlierResult?.()) as BaseBackupManifest | undefined;
  if (earlier && (await archive.baseBackups()).manifests.some((m) => m.id === earlier.id)) {
    return earlier;
  }
  const lockOptions = { timeoutMs: config.LOCK_TIMEOUT_MS, signal: run.signal };
  run.onProgress?.({ phase: 'waiting-for-lock', percent: null });
  const held: HeldLock[] = [];
  const client = new pg.Client(clientConfig(serverConnection(server), 'pgkeep-basebackup'));
  client.on('error', () => {});
  let written: WrittenCopies | undefined;
  try {
    held.push(await locks.acquire(`basebackup:${server.name}`, 'exclusive', lockOptions));
    run.onProgress?.({
      phase: 'waiting-for-slot',
      percent: null,
      waitingFor: `server:${server.name}`,
    });
    held.push(
      await locks.acquireAny(serverSlots(server.name, server.maxConcurrentJobs), lockOptions),
    );
    const signal = AbortSignal.any(
      [run.signal, ...held.map((lock) => lock.lost)].filter((s): s is AbortSignal => !!s),
    );
    run.onProgress?.({ phase: 'preparing', percent: 0 });
    const check = await checkPitrRequirements(server);
    if (!check.ok) {
      throw new AppError(
        'PITR_UNAVAILABLE',
        `point-in-time recovery of server ${server.name} is unavailable: ${check.reasons.join('; ')}`,
        { details: { reasons: check.reasons } },
      );
    }
    await client.connect();
    let estimate = 0;
    try {
      const { rows } = await client.query<{ bytes: string }>(
        'SELECT sum(pg_database_size(oid))::bigint::text AS bytes FROM pg_database WHERE datallowconn',
      );
      estimate = Number(rows[0]?.bytes ?? 0);
    } catch {
      // A role without CONNECT on every database: no estimate, no progress percentage.
    }
    const local = archive.store.local;
    if (local && estimate > 0) {
      // The compressed copy, and the extracted one that pg_verifybackup reads.
      const needed = Math.floor(estimate / 2) + (payload.verify ? estimate : 0);
      assertRoom('this base backup', local.where, needed, await local.freeBytes());
    }

    const started = new Date();
    const startedOnServer = await serverNow(client);
    const id = newBackupId(started);
    const log = run.logger.child({ baseBackupId: id, server: server.name });
    const encryption =
      pitr.encryption && context.keyRing.writeKeyId ? context.keyRing.encryptStream() : null;
    const filename = baseBackupFilename(id, encryption !== null);
    log.info({ checkpoint: payload.checkpoint }, 'base backup started');
    const basebackup = startChild(
      'pg_basebackup',
      [
        '--pgdata',
        '-',
        '--format',
        'tar',
        '--wal-method',
        'none',
        '--checkpoint',
        payload.checkpoint,
        '--label',
        `pgkeep ${id}`,
        '--no-password',
      ],
      { env: libpqEnv(serverConnection(server), { PATH: process.env.PATH }), signal },
    );
    const { stdout } = basebackup.child;
    if (!stdout) throw new Error('pg_basebackup was started without a stdout pipe');
    const tarHash = createHash('sha256');
    let tarSize = 0;
    let lastReport = 0;
    const count = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        tarHash.update(chunk);
        tarSize += chunk.length;
        const now = Date.now();
        if (now - lastReport >= 500) {
          lastReport = now;
          run.onProgress?.({
            phase: 'copying',
            percent: estimate > 0 ? Math.min(99, Math.floor((tarSize / estimate) * 100)) : null,
            bytesRead: tarSize,
          });
        }
        callback(null, chunk);
      },
    });
    const reader = tarReader();
    const zstd = compressionStage('zstd', { zstd: config.BACKUP_ZSTD_LEVEL, gzip: 6 }, signal);
    const tail = encryption ? encryption.stream : new PassThrough();
    const flowing = pipeline([stdout, count, reader.tap, zstd.stream, tail]);
    flowing.catch((error: unknown) => tail.destroy(error as Error));
    try {
      written = await archive.store.writeCopies(filename, tail, {
        signal,
        sizeHint: estimate > 0 ? Math.floor(estimate / 3) : undefined,
        beforeCommit: async () => {
          await basebackup.done;
          await flowing;
          await zstd.done;
          await reader.finished;
        },
      });
    } catch (error) {
      // pg_basebackup's own error says more than the broken pipe it caused.
      const failed = await basebackup.done.then(
        () => undefined,
        (reason: unknown) => reason,
      );
      throw baseBackupError(failed ?? error);
    }
    const stoppedOnServer = await serverNow(client);
    const label = reader.files.get('backup_label');
    const manifestText = reader.files.get('backup_manifest');
    const control = reader.files.get('global/pg_control');
    if (!label || !manifestText || !control || control.length < 8) {
      throw new AppError(
        'PG_BASEBACKUP_FAILED',
        'the base backup lacks backup_label, backup_manifest or global/pg_control',
      );
    }
    const range = walRangeOf(manifestText.toString('utf8'));
    const segmentSize = check.walSegmentSize ?? 16 * 1024 * 1024;
    const startLsn = parseLsn(range.startLsn);
    const stopLsn = parseLsn(range.stopLsn);
    // The WAL needed ends just before the stop LSN.
    const stopSegno = segmentOf(stopLsn > startLsn ? stopLsn - 1n : startLsn, segmentSize);
    const systemIdentifier = control.readBigUInt64LE(0).toString();

    if (payload.verify) {
      run.onProgress?.({ phase: 'verifying', percent: 99 });
      await verifyStored(
        context,
        filename,
        encryption?.keyId ?? null,
        id,
        check.pgBasebackup?.major,
        signal,
      );
      log.info('base backup verified with pg_verifybackup');
    }
    const completed = new Date();
    const manifest: BaseBackupManifest = {
      manifestVersion: 1,
      kind: 'basebackup',
      id,
      server: server.name,
      filename,
      size: written.size,
      sha256: written.sha256,
      tarSize,
      compression: 'zstd',
      encryption: encryption
        ? {
            algorithm: encryptionAlgorithm,
            keyId: encryption.keyId,
            chunkBytes: encryption.chunkBytes,
          }
        : null,
      copies: written.copies,
      serverVersion: check.serverVersion ?? 'unknown',
      serverVersionNum: check.serverVersionNum ?? 0,
      pgBasebackupVersion: check.pgBasebackup?.version ?? 'unknown',
      systemIdentifier,
      timeline: range.timeline,
      startLsn: range.startLsn,
      stopLsn: range.stopLsn,
      startSegment: segmentName(range.timeline, segmentOf(startLsn, segmentSize), segmentSize),
      stopSegment: segmentName(range.timeline, stopSegno, segmentSize),
      walSegmentSize: segmentSize,
      startTime: startedOnServer.toISOString(),
      stopTime: stoppedOnServer.toISOString(),
      checkpoint: payload.checkpoint,
      verification: payload.verify
        ? { tool: 'pg_verifybackup', ok: true, at: completed.toISOString() }
        : null,
      label: payload.label,
      type: payload.type,
      requestedBy: payload.requestedBy,
      jobId: run.jobId,
      createdAt: started.toISOString(),
      completedAt: completed.toISOString(),
      durationMs: completed.getTime() - started.getTime(),
    };
    const known = await archive.identity();
    if (known && known.systemIdentifier !== systemIdentifier) {
      throw new AppError(
        'PITR_ARCHIVE_CONFLICT',
        `the server's system identifier ${systemIdentifier} is not the archive's (${known.systemIdentifier})`,
      );
    }
    await archive.saveBaseBackup(manifest);
    written = undefined;
    // The stop segment reaches the archive now rather than when it fills.
    await client.query('SELECT pg_switch_wal()').catch(() => {});
    log.info(
      {
        bytes: manifest.size,
        tarBytes: tarSize,
        startLsn: manifest.startLsn,
        stopLsn: manifest.stopLsn,
      },
      'base backup completed',
    );
    run.onProgress?.({ phase: 'done', percent: 100 });
    return manifest;
  } catch (error) {
    await written?.discard();
    throw baseBackupError(error);
  } finally {
    await client.end().catch(() => {});
    for (const lock of held.reverse()) await lock.release().catch(() => {});
  }
}
