import {
  type ArchivedWal,
  type BaseBackupManifest,
  baseBackupFilename,
  baseBackupManifestSchema,
  walEntrySchema,
} from '@pgkeep/core';
import { formatLsn, segmentName } from './wal-position.js';

/**
 * Catalog entries for the PITR unit tests, each checked against its schema so that a test never
 * passes on a shape the archive could not hold. Not part of the package's surface.
 */

export const MiB = 1024 * 1024;
export const SEGMENT_SIZE = 16 * MiB;

const epoch = Date.UTC(2026, 2, 1);

/** An instant `minutes` after 2026-03-01T00:00Z, as the catalogs write it. */
export const at = (minutes: number) => new Date(epoch + minutes * 60_000).toISOString();

/** Segment `segno` of `timeline`, named as PostgreSQL names it. */
export const segment = (timeline: number, segno: number, size = SEGMENT_SIZE) =>
  segmentName(timeline, BigInt(segno), size);

/** An archived WAL file (a segment or a history file) of the catalog. */
export function archivedWal(
  name: string,
  coveredUntil: string | null,
  fields: Partial<ArchivedWal> = {},
): ArchivedWal {
  const entry = walEntrySchema.parse({
    op: 'archived',
    name,
    filename: `${name}.zst`,
    walSize: SEGMENT_SIZE,
    walSha256: '1'.repeat(64),
    size: 4096,
    sha256: '2'.repeat(64),
    encryption: null,
    destinations: ['local'],
    archivedAt: coveredUntil ?? at(0),
    coveredUntil,
    ...fields,
  });
  if (entry.op !== 'archived') throw new Error('not an archived entry');
  return entry;
}

/** Segments `from`..`to` of a timeline, segment n covering up to minute n (or null). */
export function segmentRun(
  timeline: number,
  from: number,
  to: number,
  coveredUntil: (segno: number) => string | null = (segno) => at(segno),
  size = SEGMENT_SIZE,
): ArchivedWal[] {
  const run: ArchivedWal[] = [];
  for (let segno = from; segno <= to; segno += 1) {
    run.push(archivedWal(segment(timeline, segno, size), coveredUntil(segno)));
  }
  return run;
}

let counter = 0;

/**
 * A base backup whose WAL runs from segment `start` to segment `stop` and which is consistent
 * at `stopTime`; created a minute before it unless `createdAt` says otherwise.
 */
export function baseBackup(fields: {
  start: number;
  stop: number;
  stopTime: string;
  timeline?: number;
  createdAt?: string;
  type?: 'manual' | 'scheduled';
  size?: number;
  destinations?: string[];
}): BaseBackupManifest {
  counter += 1;
  const size = fields.size ?? SEGMENT_SIZE;
  const timeline = fields.timeline ?? 1;
  const createdAt =
    fields.createdAt ?? new Date(Date.parse(fields.stopTime) - 60_000).toISOString();
  const id = `${createdAt.replace(/[:.]/g, '-')}-${counter.toString(16).padStart(12, '0')}`;
  const filename = baseBackupFilename(id, false);
  return baseBackupManifestSchema.parse({
    manifestVersion: 1,
    kind: 'basebackup',
    id,
    server: 'main',
    filename,
    size: 1000,
    sha256: '3'.repeat(64),
    tarSize: 30_000,
    compression: 'zstd',
    encryption: null,
    copies: (fields.destinations ?? ['local']).map((destination) => ({
      destination,
      location: filename,
      size: 1000,
      sha256: '3'.repeat(64),
      writtenAt: fields.stopTime,
    })),
    serverVersion: '15.8',
    serverVersionNum: 150008,
    pgBasebackupVersion: '15.8',
    systemIdentifier: '7350000000000000001',
    timeline,
    startLsn: formatLsn(BigInt(fields.start) * BigInt(size) + 0x28n),
    stopLsn: formatLsn(BigInt(fields.stop) * BigInt(size) + 0x100n),
    startSegment: segment(timeline, fields.start, size),
    stopSegment: segment(timeline, fields.stop, size),
    walSegmentSize: size,
    startTime: createdAt,
    stopTime: fields.stopTime,
    checkpoint: 'fast',
    verification: null,
    label: null,
    type: fields.type ?? 'scheduled',
    requestedBy: 'scheduler',
    jobId: null,
    createdAt,
    completedAt: fields.stopTime,
    durationMs: Date.parse(fields.stopTime) - Date.parse(createdAt),
  });
}
