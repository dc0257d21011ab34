import { z } from 'zod';
import { backupIdRegex } from './backup-id.js';
import { copySchema, manifestEncryptionSchema } from './manifest.js';
import { labelSchema, requesterSchema } from './names.js';

/** A WAL position as PostgreSQL prints it: `0/3000148`. */
export const lsnSchema = z.string().regex(/^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/, 'must be an LSN');

/** A WAL segment's file name: timeline, then the segment number in two 8-digit halves. */
export const walSegmentNameRegex = /^[0-9A-F]{24}$/;
/** A timeline history file: `00000002.history`. */
export const historyFileNameRegex = /^[0-9A-F]{8}\.history$/;

const versionSchema = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[^\s\p{Cc}]+$/u);

/**
 * One base backup of a server: `pg_basebackup -Ft -D - -X none` (the WAL it needs comes from the
 * archive), compressed with zstd, in `basebackup-<id>.tar.zst[.enc]` beside this manifest.
 */
export const baseBackupManifestSchema = z
  .object({
    manifestVersion: z.literal(1),
    kind: z.literal('basebackup'),
    id: z.string().regex(backupIdRegex),
    server: z.string().regex(/^[a-z0-9_-]{1,63}$/),
    filename: z.string().max(255),
    size: z.number().int().nonnegative(),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    /** Bytes of the tar stream before compression: what extracting it needs on disk. */
    tarSize: z.number().int().nonnegative(),
    compression: z.literal('zstd'),
    encryption: manifestEncryptionSchema.nullable(),
    copies: z.array(copySchema).min(1).max(16),
    serverVersion: versionSchema,
    serverVersionNum: z.number().int().positive(),
    pgBasebackupVersion: versionSchema,
    /** pg_control's database system identifier: WAL of another cluster never fits this one. */
    systemIdentifier: z.string().regex(/^[0-9]{1,20}$/),
    timeline: z.number().int().positive(),
    startLsn: lsnSchema,
    stopLsn: lsnSchema,
    startSegment: z.string().regex(walSegmentNameRegex),
    stopSegment: z.string().regex(walSegmentNameRegex),
    walSegmentSize: z.number().int().positive(),
    startTime: z.iso.datetime(),
    /** The earliest time a recovery from this base backup can stop at (it is consistent then). */
    stopTime: z.iso.datetime(),
    checkpoint: z.enum(['fast', 'spread']),
    verification: z
      .object({ tool: z.literal('pg_verifybackup'), ok: z.boolean(), at: z.iso.datetime() })
      .nullable(),
    label: labelSchema.nullable(),
    type: z.enum(['manual', 'scheduled']),
    requestedBy: requesterSchema,
    jobId: z.string().min(1).max(200).nullable(),
    createdAt: z.iso.datetime(),
    completedAt: z.iso.datetime(),
    durationMs: z.number().int().nonnegative(),
  })
  .refine(
    (manifest) =>
      manifest.filename === baseBackupFilename(manifest.id, manifest.encryption !== null),
    { message: 'filename does not match id and encryption', path: ['filename'] },
  );
export type BaseBackupManifest = z.infer<typeof baseBackupManifestSchema>;

export function baseBackupFilename(id: string, encrypted: boolean): string {
  return `basebackup-${id}.tar.zst${encrypted ? '.enc' : ''}`;
}

export function baseBackupManifestFilename(id: string): string {
  return `basebackup-${id}.json`;
}

/**
 * One archived file of the WAL catalog (a segment or a timeline history file), as one line of
 * the server's `wal-catalog.jsonl`. Lines are only ever appended: removal is a `removed` line.
 */
export const walEntrySchema = z.discriminatedUnion('op', [
  z.object({
    op: z.literal('archived'),
    /** The file's name in pg_wal: a segment or `<timeline>.history`. */
    name: z.union([z.string().regex(walSegmentNameRegex), z.string().regex(historyFileNameRegex)]),
    /** Stored as `<name>.zst[.enc]`. */
    filename: z.string().max(64),
    /** Bytes as PostgreSQL wrote them, and their sha256 (checked again when fetched). */
    walSize: z.number().int().nonnegative(),
    walSha256: z.string().regex(/^[0-9a-f]{64}$/),
    /** Bytes stored in every destination, and their sha256. */
    size: z.number().int().nonnegative(),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    encryption: manifestEncryptionSchema.nullable(),
    destinations: z.array(z.string()).min(1).max(16),
    archivedAt: z.iso.datetime(),
    /**
     * Every change committed on the server before this time lies in this segment or an earlier
     * one (from the server's clock and WAL position sampled by the receiver); null if unknown.
     */
    coveredUntil: z.iso.datetime().nullable(),
  }),
  z.object({
    op: z.literal('removed'),
    name: z.string().max(64),
    removedAt: z.iso.datetime(),
  }),
]);
export type WalEntry = z.infer<typeof walEntrySchema>;
export type ArchivedWal = Extract<WalEntry, { op: 'archived' }>;

/** The recoverable window of one server, as the API, health and metrics report it. */
export const recoverableWindowSchema = z.object({
  server: z.string(),
  timeline: z.number().int().positive().nullable(),
  /** The earliest time a restore can reach (the oldest usable base backup's end); null: none. */
  from: z.iso.datetime().nullable(),
  /** The latest time a restore can reach (the archive's contiguous end); null: none. */
  to: z.iso.datetime().nullable(),
  /** Spans no restore can reach: WAL is missing between two segments. */
  gaps: z.array(
    z.object({
      afterSegment: z.string(),
      beforeSegment: z.string(),
      from: z.iso.datetime().nullable(),
      to: z.iso.datetime().nullable(),
    }),
  ),
  /** Seconds between now and `to` (null without `to`). */
  lagSeconds: z.number().nullable(),
  baseBackups: z.number().int().nonnegative(),
  segments: z.number().int().nonnegative(),
  lastSegment: z.string().nullable(),
});
export type RecoverableWindow = z.infer<typeof recoverableWindowSchema>;

/**
 * What a server's WAL receiver is doing, published by the worker that leads it (or, while a
 * requirement is missing, by the worker that checked) with an expiry: a status nobody renews
 * vanishes, and the API then says that no receiver runs.
 */
export interface PitrStatus {
  server: string;
  /**
   * `streaming`: pg_receivewal runs and the archive follows; `starting`: the leader is starting
   * it; `unavailable`: a requirement is missing (see reasons); `error`: the receiver stopped
   * and is being started again (see reasons).
   */
  state: 'streaming' | 'starting' | 'unavailable' | 'error';
  reasons: string[];
  leader: { workerId: string; hostname: string; pid: number; since: string } | null;
  slot: {
    name: string;
    active: boolean;
    /** WAL the slot holds on the server (bytes from its restart_lsn to the current position). */
    retainedBytes: number | null;
    walStatus: string | null;
  } | null;
  lastArchived: { name: string; at: string } | null;
  /**
   * The last time the server had written nothing past the last archived segment: every commit
   * before it is in the archive (a quiet server's window reaches up to here).
   */
  caughtUpAt: string | null;
  /** The server's current WAL insert position, and bytes of it not yet archived. */
  insertLsn: string | null;
  lagBytes: number | null;
  updatedAt: string;
}
