import {
  backupFormatSchema,
  backupIdRegex,
  baseBackupManifestSchema,
  compressionSchema,
  cronSchema,
  databaseNameSchema,
  labelSchema,
  MAX_DUMP_JOBS,
  manifestObjectSchema,
  pitrScheduleNameSchema,
  recoverableWindowSchema,
  retentionSchema,
  scheduleNameSchema,
  tableListSchema,
  targetRefSchema,
  timeZoneSchema,
} from '@pgkeep/core';
import { z } from 'zod';

/** The panel's envelope: `{ success, data, message?, count? }` or `{ success: false, error }`. */
export const errorEnvelope = z
  .object({
    success: z.literal(false),
    error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }),
  })
  // One named schema in the OpenAPI document (/docs), referenced by every error response.
  .meta({
    id: 'ErrorEnvelope',
    description: 'A refused or failed request; `error.code` is stable, the status follows it.',
  });

export function okEnvelope<T extends z.ZodType>(data: T) {
  return z.object({
    success: z.literal(true),
    data,
    message: z.string().optional(),
    count: z.number().int().optional(),
  });
}

export const jobAccepted = okEnvelope(z.object({ jobId: z.string() }));

export const backupIdParams = z.object({
  id: z.string().max(40).regex(backupIdRegex, 'must be a backup id like 2026-01-22T16-30-00-000Z'),
});

export const jobIdParams = z.object({ jobId: z.string().max(80) });

/** A target by name; a discovered database's is `<server>/<database>`, sent as `server%2Fdatabase`. */
export const targetParams = z.object({ target: targetRefSchema });

export const createBackupBody = z
  .object({
    tables: tableListSchema.optional(),
    format: backupFormatSchema.optional().meta({
      description:
        "custom (pg_dump -Fc), plain (SQL) or directory (pg_dump -Fd --jobs, stored as one tar); default: the target's format",
    }),
    jobs: z
      .number({ error: `must be a whole number from 1 to ${MAX_DUMP_JOBS}` })
      .int(`must be a whole number from 1 to ${MAX_DUMP_JOBS}`)
      .min(1, 'must be at least 1')
      .max(MAX_DUMP_JOBS, `must be at most ${MAX_DUMP_JOBS}`)
      .optional()
      .meta({
        description: `Parallel pg_dump jobs of a directory-format backup (1 to ${MAX_DUMP_JOBS}); only with format directory. Default: the target's \`jobs\`, else BACKUP_DUMP_JOBS, else min(4, the worker's cores).`,
        examples: [4],
      }),
    compression: compressionSchema.optional(),
    label: labelSchema.optional(),
  })
  .strict()
  .refine(
    (body) => body.jobs === undefined || body.format === undefined || body.format === 'directory',
    {
      message: 'jobs goes with format directory',
      path: ['jobs'],
    },
  )
  // `curl -X POST /api/backup` with no body at all means a full backup with the defaults.
  .nullish();

export const restoreBody = z
  .object({
    confirm: z.string().max(63).optional(),
    target: databaseNameSchema.optional(),
  })
  .strict();

/** A point-in-time restore: the time (RFC 3339 with an offset, or `latest`), confirmed. */
export const pitrRestoreBody = z
  .object({
    pointInTime: z.union([z.iso.datetime({ offset: true }), z.literal('latest')]),
    confirm: z.string().max(63).optional(),
    target: databaseNameSchema.optional(),
    keepDump: z.boolean().optional(),
  })
  .strict();

export const verifyBody = z.object({ restore: z.boolean().optional() }).strict().nullish();

const wholeNumber = (min: number, max: number) =>
  z
    .string()
    .regex(/^[0-9]{1,5}$/, `must be a whole number from ${min} to ${max}`)
    .transform(Number)
    .pipe(z.number().int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));

/**
 * `?keepLast=N` (the panel's), or `?policy=gfs` with any of `days`, `weeks`, `months`, `years`
 * (the rest from the configuration); `dryRun=true` deletes nothing and says what it would.
 */
export const cleanQuery = z
  .object({
    keepLast: wholeNumber(1, 10_000).optional(),
    policy: z.enum(['keep-last', 'gfs']).optional(),
    days: wholeNumber(0, 10_000).optional(),
    weeks: wholeNumber(0, 10_000).optional(),
    months: wholeNumber(0, 10_000).optional(),
    years: wholeNumber(0, 1_000).optional(),
    dryRun: z.enum(['true', 'false']).optional(),
  })
  .strict()
  .superRefine((query, ctx) => {
    const gfsKeys = (['days', 'weeks', 'months', 'years'] as const).filter(
      (key) => query[key] !== undefined,
    );
    if (query.policy === 'gfs') {
      if (query.keepLast !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['keepLast'],
          message: 'keepLast does not go with policy=gfs',
        });
      }
    } else {
      if (query.keepLast === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['keepLast'],
          message:
            'keepLast is required: how many of the newest backups to keep (1 to 10000), or policy=gfs',
        });
      }
      for (const key of gfsKeys) {
        ctx.addIssue({ code: 'custom', path: [key], message: `${key} goes with policy=gfs` });
      }
    }
  });
export type CleanQuery = z.output<typeof cleanQuery>;

export const scheduleParams = z.object({ name: scheduleNameSchema });

export const scheduleChangeBody = z
  .object({
    pattern: cronSchema.optional(),
    timeZone: timeZoneSchema.optional(),
    enabled: z.boolean().optional(),
  })
  .strict()
  .refine((body) => Object.keys(body).length > 0, 'give pattern, timeZone or enabled');

export const scheduleViewSchema = z.object({
  name: z.string(),
  job: z.string(),
  pattern: z.string(),
  timeZone: z.string(),
  enabled: z.boolean(),
  source: z.enum(['config', 'runtime']),
  nextRunAt: z.string().nullable(),
  updatedBy: z.string().nullable(),
  updatedAt: z.string().nullable(),
});

/** Responses: the manifest's fields, every one present (the catalog fills the defaults in). */
export const manifestSchema = manifestObjectSchema;

export const statsSchema = z.object({
  totalBackups: z.number().int(),
  totalSize: z.number().int(),
  oldestBackup: z
    .object({ id: z.string(), filename: z.string(), createdAt: z.string(), size: z.number() })
    .nullable(),
  newestBackup: z
    .object({ id: z.string(), filename: z.string(), createdAt: z.string(), size: z.number() })
    .nullable(),
  encryptedBackups: z.number().int(),
  /** Copies each destination holds (a destination no longer configured still shows). */
  byDestination: z.record(
    z.string(),
    z.object({ backups: z.number().int(), size: z.number().int() }),
  ),
});

/** A job's error; `details` when it has them (a failed verify: `backupId` and every check). */
const jobErrorSchema = z.object({
  code: z.string(),
  message: z.string(),
  details: z.record(z.string(), z.unknown()).optional(),
});

export const jobViewSchema = z.object({
  jobId: z.string(),
  name: z.string(),
  state: z.enum(['queued', 'running', 'completed', 'failed']),
  progress: z.unknown(),
  result: z.unknown(),
  error: jobErrorSchema.nullable(),
  cancelRequestedBy: z.string().nullable(),
  lastError: jobErrorSchema.nullable(),
  attemptsMade: z.number().int(),
  requestedBy: z.string().nullable(),
  target: z.string(),
  createdAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
});

const check = z.object({ ok: z.boolean() }).catchall(z.unknown());
/** Each dependency with what was found (errors, versions, live workers): admins only. */
const dependencyChecksSchema = z.object({
  pgDump: check,
  redis: check,
  database: check,
  storage: check,
  workers: check,
});

/** The public probe: pass or fail per check and pg_dump's version, nothing else. */
const passed = z.object({ ok: z.boolean() });
export const healthSchema = z.object({
  healthy: z.boolean(),
  failing: z.array(z.enum(['pgDump', 'redis', 'database', 'storage', 'workers'])),
  checks: z.object({
    pgDump: passed.extend({ version: z.string().optional() }),
    redis: passed,
    database: passed,
    storage: passed,
    workers: passed,
  }),
});

/** A target's last job that failed for good. */
export const targetFailureSchema = z.object({
  job: z.string(),
  code: z.string(),
  message: z.string(),
  at: z.string(),
});

/** `warning`: it works but something needs a look; `unavailable`: a requirement is missing. */
const pitrStatusSchema = z.enum(['ok', 'warning', 'unavailable']);

/** A server's point-in-time recovery in the health detail; `gaps` counts spans no restore reaches. */
export const healthDetailPitrSchema = z.object({
  server: z.string(),
  status: pitrStatusSchema,
  reasons: z.array(z.string()),
  from: z.string().nullable(),
  to: z.string().nullable(),
  lagSeconds: z.number().nullable(),
  gaps: z.number().int(),
});

/** A base backup now, with the server's default checkpoint unless `checkpoint` says otherwise. */
export const createBaseBackupBody = z
  .object({
    checkpoint: z.enum(['fast', 'spread']).optional(),
    label: labelSchema.nullable().optional(),
    /** Extract it into a scratch directory and run pg_verifybackup (default true). */
    verify: z.boolean().optional(),
  })
  .strict()
  .nullish();

/** The server's retention applied to its archive; `dryRun` deletes nothing, says what it would. */
export const pitrCleanBody = z.object({ dryRun: z.boolean().optional() }).strict().nullish();

const pitrScheduleSpec = z.object({ pattern: z.string(), enabled: z.boolean() });

/** What the worker leading the server's WAL receiver last published. */
const receiverStatusSchema = z.object({
  server: z.string(),
  state: z.enum(['streaming', 'starting', 'unavailable', 'error']),
  reasons: z.array(z.string()),
  leader: z
    .object({ workerId: z.string(), hostname: z.string(), pid: z.number(), since: z.string() })
    .nullable(),
  slot: z
    .object({
      name: z.string(),
      active: z.boolean(),
      retainedBytes: z.number().nullable(),
      walStatus: z.string().nullable(),
    })
    .nullable(),
  lastArchived: z.object({ name: z.string(), at: z.string() }).nullable(),
  insertLsn: z.string().nullable(),
  lagBytes: z.number().nullable(),
  updatedAt: z.string(),
});

export const pitrViewSchema = recoverableWindowSchema
  .extend({
    status: pitrStatusSchema,
    reasons: z.array(z.string()),
    /** Null while no worker leads the server's WAL receiver. */
    receiver: receiverStatusSchema.nullable(),
    settings: z.object({
      slot: z.string(),
      destinations: z.array(z.string()),
      encryption: z.boolean(),
      baseBackup: z.object({
        schedule: pitrScheduleSpec,
        checkpoint: z.enum(['fast', 'spread']),
      }),
      retention: retentionSchema,
      cleanup: z.object({ schedule: pitrScheduleSpec }),
      timeZone: z.string(),
      lagWarningSeconds: z.number(),
      retainedWarningBytes: z.number(),
      switchWalSeconds: z.number(),
    }),
    schedules: z.array(
      z.object({
        name: pitrScheduleNameSchema,
        enabled: z.boolean(),
        pattern: z.string(),
        timeZone: z.string(),
        nextRunAt: z.string().nullable(),
      }),
    ),
  })
  .meta({ id: 'PitrOverview' });

export const baseBackupListSchema = z.object({
  baseBackups: z.array(baseBackupManifestSchema.meta({ id: 'BaseBackupManifest' })),
});

export const healthDetailSchema = z.object({
  status: z.enum(['ok', 'warning', 'error']),
  reasons: z.array(
    z.object({ code: z.string(), severity: z.enum(['warning', 'error']), message: z.string() }),
  ),
  checks: dependencyChecksSchema,
  backupCount: z.number().int().nullable(),
  /** The S3 destinations, each checked by writing and removing a small object. */
  destinations: z.array(
    z.object({
      name: z.string(),
      kind: z.enum(['local', 's3']),
      required: z.boolean(),
      ok: z.boolean(),
      error: z.string().optional(),
    }),
  ),
  newestBackup: z
    .object({
      id: z.string(),
      completedAt: z.string(),
      ageSeconds: z.number(),
      /** Its last verify (null: never verified, or not known with Redis down). */
      lastVerify: z
        .object({
          ok: z.boolean(),
          verifiedAt: z.string(),
          jobId: z.string().nullable(),
          failedChecks: z.array(z.object({ name: z.string(), detail: z.string() })),
        })
        .nullable(),
    })
    .nullable(),
  maxBackupAgeSeconds: z.number(),
  lastScheduledBackupFailure: z
    .object({
      jobId: z.string(),
      dueAt: z.string(),
      failedAt: z.string().nullable(),
      error: z.object({ code: z.string(), message: z.string() }),
    })
    .nullable(),
  freeBytes: z.number().nullable(),
  minFreeBytes: z.number(),
  /** Each server with point-in-time recovery: its recoverable window and how it is doing. */
  pitr: z.array(healthDetailPitrSchema),
  /** Each target: its health, the newest backup's age, its last failure. */
  targets: z.array(
    z.object({
      name: z.string(),
      health: z.enum(['ok', 'warning', 'error']),
      reasons: z.array(z.string()),
      newestBackupAgeSeconds: z.number().nullable(),
      lastFailure: targetFailureSchema.nullable(),
    }),
  ),
});
