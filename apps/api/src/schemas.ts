import {
  backupFormatSchema,
  backupIdRegex,
  compressionSchema,
  databaseNameSchema,
  labelSchema,
  manifestSchema,
  tableListSchema,
} from '@pgkeep/core';
import { z } from 'zod';

/** The panel's envelope: `{ success, data, message?, count? }` or `{ success: false, error }`. */
export const errorEnvelope = z.object({
  success: z.literal(false),
  error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }),
});

export function okEnvelope<T extends z.ZodType>(data: T) {
  return z.object({
    success: z.literal(true),
    data,
    message: z.string().optional(),
    count: z.number().int().optional(),
  });
}

export const errorResponses = {
  400: errorEnvelope,
  401: errorEnvelope,
  403: errorEnvelope,
  404: errorEnvelope,
  409: errorEnvelope,
  413: errorEnvelope,
  415: errorEnvelope,
  500: errorEnvelope,
  503: errorEnvelope,
} as const;

export const jobAccepted = okEnvelope(z.object({ jobId: z.string() }));

export const backupIdParams = z.object({
  id: z.string().max(40).regex(backupIdRegex, 'must be a backup id like 2026-01-22T16-30-00-000Z'),
});

export const jobIdParams = z.object({ jobId: z.string().max(80) });

export const createBackupBody = z
  .object({
    tables: tableListSchema.optional(),
    format: backupFormatSchema.optional(),
    compression: compressionSchema.optional(),
    label: labelSchema.optional(),
  })
  .strict()
  // `curl -X POST /api/backup` with no body at all means a full backup with the defaults.
  .nullish();

export const restoreBody = z
  .object({
    confirm: z.string().max(63).optional(),
    target: databaseNameSchema.optional(),
  })
  .strict();

export const verifyBody = z.object({ restore: z.boolean().optional() }).strict().nullish();

export const cleanQuery = z
  .object({
    keepLast: z
      .string({
        message: 'keepLast is required: how many of the newest backups to keep (1 to 10000)',
      })
      .regex(/^[0-9]{1,5}$/, 'must be a whole number from 1 to 10000')
      .transform(Number)
      .pipe(z.number().int().min(1, 'must be at least 1').max(10_000, 'must be at most 10000')),
  })
  .strict();

export { manifestSchema };

export const statsSchema = z.object({
  totalBackups: z.number().int(),
  totalSize: z.number().int(),
  oldestBackup: z
    .object({ id: z.string(), filename: z.string(), createdAt: z.string(), size: z.number() })
    .nullable(),
  newestBackup: z
    .object({ id: z.string(), filename: z.string(), createdAt: z.string(), size: z.number() })
    .nullable(),
});

export const jobViewSchema = z.object({
  jobId: z.string(),
  name: z.string(),
  state: z.enum(['queued', 'running', 'completed', 'failed']),
  progress: z.unknown(),
  result: z.unknown(),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
  cancelRequestedBy: z.string().nullable(),
  lastError: z.object({ code: z.string(), message: z.string() }).nullable(),
  attemptsMade: z.number().int(),
  requestedBy: z.string().nullable(),
  createdAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
});

const check = z.object({ ok: z.boolean() }).catchall(z.unknown());
export const healthSchema = z.object({
  healthy: z.boolean(),
  failing: z.array(z.string()),
  checks: z.object({
    pgDump: check,
    redis: check,
    database: check,
    storage: check,
    workers: check,
  }),
});
