import { z } from 'zod';
import { backupIdRegex } from './backup-id.js';

export const backupFormats = ['custom', 'plain'] as const;
export const compressions = ['zstd', 'gzip', 'none'] as const;
export const backupTypes = ['manual', 'scheduled', 'pre-restore'] as const;

export const backupFormatSchema = z.enum(backupFormats);
export const compressionSchema = z.enum(compressions);
export const backupTypeSchema = z.enum(backupTypes);

export type BackupFormat = z.infer<typeof backupFormatSchema>;
export type Compression = z.infer<typeof compressionSchema>;
export type BackupType = z.infer<typeof backupTypeSchema>;

/** A destination's name: `local`, or an S3 destination's name from the configuration. */
export const destinationNameRegex = /^[a-z][a-z0-9]{0,31}$/;

export const encryptionAlgorithm = 'aes-256-gcm-stream-v1';

/** How an artifact is encrypted: the algorithm and which key (never the key itself). */
export const manifestEncryptionSchema = z.object({
  algorithm: z.literal(encryptionAlgorithm),
  keyId: z.string().regex(/^[0-9a-f]{16}$/),
  chunkBytes: z
    .number()
    .int()
    .min(1024)
    .max(16 * 1024 * 1024),
});
export type ManifestEncryption = z.infer<typeof manifestEncryptionSchema>;

/** One stored copy of the artifact: which destination, where in it, and what was stored. */
export const copySchema = z.object({
  destination: z.string().regex(destinationNameRegex),
  location: z.string().min(1).max(2048),
  size: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  writtenAt: z.iso.datetime(),
});
export type BackupCopy = z.infer<typeof copySchema>;

/** One JSON file beside each artifact. A backup exists exactly when its manifest does. */
/** The manifest's fields, as the API shows them (every field present). */
export const manifestObjectSchema = z.object({
  // 1: local copy only, never encrypted. 2: `copies` and `encryption`.
  manifestVersion: z.union([z.literal(1), z.literal(2)]),
  id: z.string().regex(backupIdRegex),
  filename: z.string(),
  size: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  createdAt: z.iso.datetime(),
  completedAt: z.iso.datetime(),
  durationMs: z.number().int().nonnegative(),
  type: backupTypeSchema,
  status: z.literal('completed'),
  format: backupFormatSchema,
  compression: compressionSchema,
  tables: z.array(z.string()).nullable(),
  database: z.string(),
  /** The pgkeep target and server it was taken of (`default` for backups made before targets). */
  target: z.string().max(127).optional(),
  server: z.string().max(63).optional(),
  /** Tables a full backup left out, by the target's configuration. */
  excludedTables: z.array(z.string().max(127)).max(1000).optional(),
  serverVersion: z.string(),
  pgDumpVersion: z.string(),
  rowCounts: z.record(z.string(), z.number().int().nonnegative()),
  requestedBy: z.string(),
  label: z.string().nullable(),
  jobId: z.string().nullable(),
  encryption: manifestEncryptionSchema.nullable().default(null),
  copies: z.array(copySchema).max(16).default([]),
  /** Optional destinations that did not get a copy when the backup was made. */
  failedCopies: z
    .array(
      z.object({
        destination: z.string().regex(destinationNameRegex),
        code: z.string().max(64),
        message: z.string().max(2000),
      }),
    )
    .max(16)
    .default([]),
});

export const manifestSchema = manifestObjectSchema
  .refine(
    // A manifest from disk is hostile input: its filename must be the one its id and format name,
    // so no manifest can point a later delete or restore at some other file.
    (manifest) =>
      manifest.filename ===
      artifactFilename(
        manifest.id,
        manifest.format,
        manifest.compression,
        manifest.encryption !== null,
      ),
    {
      message: 'filename does not match id, format, compression and encryption',
      path: ['filename'],
    },
  )
  .refine((manifest) => manifest.manifestVersion === 1 || manifest.copies.length > 0, {
    message: 'a version-2 manifest lists at least one copy',
    path: ['copies'],
  })
  .refine(
    (manifest) =>
      new Set(manifest.copies.map((copy) => copy.destination)).size === manifest.copies.length,
    { message: 'a destination is listed twice', path: ['copies'] },
  )
  .refine(
    // Every copy holds the same bytes: one artifact, written to each destination.
    (manifest) =>
      manifest.copies.every(
        (copy) => copy.size === manifest.size && copy.sha256 === manifest.sha256,
      ),
    { message: 'a copy differs from the artifact', path: ['copies'] },
  )
  .transform((manifest) =>
    // A version-1 manifest describes the one local copy beside it.
    manifest.copies.length > 0 || manifest.manifestVersion === 2
      ? manifest
      : {
          ...manifest,
          copies: [
            {
              destination: 'local',
              location: manifest.filename,
              size: manifest.size,
              sha256: manifest.sha256,
              writtenAt: manifest.completedAt,
            },
          ],
        },
  );

export type BackupManifest = z.output<typeof manifestSchema>;
export type BackupManifestInput = z.input<typeof manifestSchema>;

/**
 * Parses a manifest's text, as read from a disk or a bucket: JSON, the schema, and the id the
 * file's name promised. Never throws.
 */
export function parseManifestText(
  text: string,
  expectedId?: string,
): { ok: true; manifest: BackupManifest } | { ok: false; reason: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) return { ok: false, reason: parsed.error.issues[0]?.message ?? 'invalid' };
  if (expectedId !== undefined && parsed.data.id !== expectedId) {
    return { ok: false, reason: 'id does not match' };
  }
  return { ok: true, manifest: parsed.data };
}

/**
 * Newest first, by time rather than by text (a timestamp with and without milliseconds sorts
 * wrongly as text); ties broken by id, which is unique.
 */
export function newestFirst(a: BackupManifest, b: BackupManifest): number {
  return Date.parse(b.createdAt) - Date.parse(a.createdAt) || b.id.localeCompare(a.id);
}

export function artifactExtension(format: BackupFormat, compression: Compression): string {
  const base = format === 'custom' ? 'dump' : 'sql';
  if (compression === 'zstd') return `${base}.zst`;
  if (compression === 'gzip') return `${base}.gz`;
  return base;
}

export function artifactFilename(
  id: string,
  format: BackupFormat,
  compression: Compression,
  encrypted = false,
) {
  return `backup-${id}.${artifactExtension(format, compression)}${encrypted ? '.enc' : ''}`;
}

/**
 * `backup-<id>.<dump|sql>[.zst|.gz][.enc]`: the id, if `name` is an artifact pgkeep names (its
 * ids carry a random suffix; the panel's old `backup-<timestamp>.sql` files do not match).
 */
export function artifactIdOf(name: string): string | undefined {
  const match = /^backup-(.+Z-[0-9a-f]{12})\.(dump|sql)(\.zst|\.gz)?(\.enc)?$/.exec(name);
  return match?.[1];
}

export function manifestFilename(id: string): string {
  return `backup-${id}.manifest.json`;
}
