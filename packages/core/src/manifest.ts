import { z } from 'zod';
import { backupIdRegex } from './backup-id.js';
import { type CatalogKeys, signatureProblem, unsignedCatalog } from './manifest-signature.js';
import { databaseNameSchema, labelSchema, requesterSchema } from './names.js';
import { MAX_BACKUP_TABLES, qualifiedTableNameSchema } from './tables.js';

/**
 * `directory`: `pg_dump --format=directory --jobs=N`, stored as one tar of the dump's directory
 * (see docs/parallel-dumps.md).
 */
export const backupFormats = ['custom', 'plain', 'directory'] as const;
export const compressions = ['zstd', 'gzip', 'none'] as const;
/** `pitr`: the dump of a database recovered to a point in time, kept as a backup of its target. */
export const backupTypes = ['manual', 'scheduled', 'pitr'] as const;

export const backupFormatSchema = z.enum(backupFormats);
export const compressionSchema = z.enum(compressions);
export const backupTypeSchema = z.enum(backupTypes);

export type BackupFormat = z.infer<typeof backupFormatSchema>;

/** Parallel jobs of a directory-format pg_dump (each one a connection to the server). */
export const MAX_DUMP_JOBS = 32;
export const dumpJobsSchema = z.number().int().min(1).max(MAX_DUMP_JOBS);

/** What a directory-format backup records about the dump its tar holds. */
export const directoryDumpSchema = z.strictObject({
  /** pg_dump's --jobs. */
  jobs: dumpJobsSchema,
  /** Files in the dump's directory (toc.dat and one per table's data, large objects). */
  files: z.number().int().min(1).max(10_000_000),
  /** Their bytes, uncompressed: the scratch space a restore extracts them into. */
  bytes: z.number().int().nonnegative(),
});
export type DirectoryDump = z.infer<typeof directoryDumpSchema>;
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

/** One stored copy of the artifact: which destination, where in it, and what was stored. */
export const copySchema = z.object({
  destination: z.string().regex(destinationNameRegex),
  location: z.string().min(1).max(2048),
  size: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  writtenAt: z.iso.datetime(),
});
export type BackupCopy = z.infer<typeof copySchema>;

/** A tool's version as it reports it: `15.20`, `16beta1`. */
const versionSchema = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[^\s\p{Cc}]+$/u, 'must be a version');

/**
 * A key of `rowCounts`: `schema.name` of any table the server had, so any identifier (up to 63
 * characters each), but never a NUL or an empty part.
 */
const rowCountKeySchema = z
  .string()
  .max(127)
  .regex(/^[^\0]+\.[^\0]+$/, 'must be a table name like "schema.User"');

const MAX_ROW_COUNTS = 100_000;

/** One JSON file beside each artifact. A backup exists exactly when its manifest does. */
/** The manifest's fields, as the API shows them (every field present). */
export const manifestObjectSchema = z.object({
  // 1: local copy only, never encrypted. 2: `copies` and `encryption`.
  manifestVersion: z.union([z.literal(1), z.literal(2)]),
  id: z.string().regex(backupIdRegex),
  filename: z.string().max(255),
  size: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  createdAt: z.iso.datetime(),
  completedAt: z.iso.datetime(),
  durationMs: z.number().int().nonnegative(),
  type: backupTypeSchema,
  status: z.literal('completed'),
  format: backupFormatSchema,
  compression: compressionSchema,
  /** Present exactly when `format` is `directory`. */
  directory: directoryDumpSchema.optional(),
  // The same rules the API applies to the tables it is asked for: a table restore drops these.
  tables: z.array(qualifiedTableNameSchema).min(1).max(MAX_BACKUP_TABLES).nullable(),
  database: databaseNameSchema,
  /** The pgkeep target and server it was taken of (absent: a backup from before targets). */
  target: z
    .string()
    .regex(/^[a-z0-9_-]{1,63}(\/[A-Za-z_][A-Za-z0-9_$-]{0,62})?$/)
    .optional(),
  server: z
    .string()
    .regex(/^[a-z0-9_-]{1,63}$/)
    .optional(),
  /** Tables a full backup left out, by the target's configuration. */
  excludedTables: z.array(qualifiedTableNameSchema).max(MAX_BACKUP_TABLES).optional(),
  serverVersion: versionSchema,
  pgDumpVersion: versionSchema,
  rowCounts: z
    .record(rowCountKeySchema, z.number().int().nonnegative())
    .refine((counts) => Object.keys(counts).length <= MAX_ROW_COUNTS, 'too many row counts'),
  requestedBy: requesterSchema,
  label: labelSchema.nullable(),
  jobId: z.string().min(1).max(200).nullable(),
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
  .refine((manifest) => (manifest.format === 'directory') === (manifest.directory !== undefined), {
    message: 'is required with format directory and not allowed with any other',
    path: ['directory'],
  })
  .refine(
    (manifest) =>
      manifest.tables === null || new Set(manifest.tables).size === manifest.tables.length,
    {
      message: 'a table is listed twice',
      path: ['tables'],
    },
  )
  .refine(
    // A table backup counts its own tables and nothing else (a partitioned table itself holds
    // no rows: its partitions are counted).
    (manifest) =>
      manifest.tables === null ||
      Object.keys(manifest.rowCounts).every((key) => manifest.tables?.includes(key)),
    { message: 'a row count names a table the backup does not hold', path: ['rowCounts'] },
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

/**
 * Parses a manifest's text, as read from a disk or a bucket: JSON, its HMAC when a catalog key
 * is configured, the schema, and the id the file's name promised. Never throws.
 */
export function parseManifestText(
  text: string,
  expectedId?: string,
  keys: CatalogKeys = unsignedCatalog,
): { ok: true; manifest: BackupManifest } | { ok: false; reason: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  const unsigned = signatureProblem(json, keys);
  if (unsigned) return { ok: false, reason: unsigned };
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) return { ok: false, reason: parsed.error.issues[0]?.message ?? 'invalid' };
  if (expectedId !== undefined && parsed.data.id !== expectedId) {
    return { ok: false, reason: 'id does not match' };
  }
  return { ok: true, manifest: parsed.data };
}

/** Anything dated and named as a backup is: what retention rules sort and select. */
export interface Dated {
  id: string;
  createdAt: string;
}

/**
 * Newest first, by time rather than by text (a timestamp with and without milliseconds sorts
 * wrongly as text); ties broken by id, which is unique.
 */
export function newestFirst(a: Dated, b: Dated): number {
  return Date.parse(b.createdAt) - Date.parse(a.createdAt) || b.id.localeCompare(a.id);
}

const artifactBase: Record<BackupFormat, string> = {
  custom: 'dump',
  plain: 'sql',
  // One tar of pg_dump's directory.
  directory: 'dir.tar',
};

export function artifactExtension(format: BackupFormat, compression: Compression): string {
  const base = artifactBase[format];
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
 * `backup-<id>.<dump|sql|dir.tar>[.zst|.gz][.enc]`: the id, if `name` is an artifact pgkeep names (its
 * ids carry a random suffix; the panel's old `backup-<timestamp>.sql` files do not match).
 */
export function artifactIdOf(name: string): string | undefined {
  const match = /^backup-(.+Z-[0-9a-f]{12})\.(dump|sql|dir\.tar)(\.zst|\.gz)?(\.enc)?$/.exec(name);
  return match?.[1];
}

export function manifestFilename(id: string): string {
  return `backup-${id}.manifest.json`;
}
