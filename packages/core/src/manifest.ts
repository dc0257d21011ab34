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

/** One JSON file beside each artifact. A backup exists exactly when its manifest does. */
export const manifestSchema = z
  .object({
    manifestVersion: z.literal(1),
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
    serverVersion: z.string(),
    pgDumpVersion: z.string(),
    rowCounts: z.record(z.string(), z.number().int().nonnegative()),
    requestedBy: z.string(),
    label: z.string().nullable(),
    jobId: z.string().nullable(),
  })
  .refine(
    // A manifest from disk is hostile input: its filename must be the one its id and format name,
    // so no manifest can point a later delete or restore at some other file.
    (manifest) =>
      manifest.filename === artifactFilename(manifest.id, manifest.format, manifest.compression),
    { message: 'filename does not match id, format and compression', path: ['filename'] },
  );

export type BackupManifest = z.infer<typeof manifestSchema>;

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

export function artifactFilename(id: string, format: BackupFormat, compression: Compression) {
  return `backup-${id}.${artifactExtension(format, compression)}`;
}

export function manifestFilename(id: string): string {
  return `backup-${id}.manifest.json`;
}
