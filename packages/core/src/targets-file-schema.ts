import picomatch from 'picomatch';
import { z } from 'zod';
import { isValidCron, timeZoneSchema } from './config.js';
import {
  backupFormatSchema,
  compressionSchema,
  destinationNameRegex,
  MAX_DUMP_JOBS,
} from './manifest.js';
import { databaseNameSchema } from './names.js';
import { MAX_TABLES, tableListSchema, tableNameSchema } from './tables.js';
import type { FileIssues, FilePath } from './targets-document.js';

/**
 * The shape of one server and one target in a targets file. Strict: an unknown key is an
 * error, so a misspelt setting never silently falls back to the environment's default.
 * Numbers and booleans may also be given as strings, which is what `${VAR}` yields.
 */

const fileInt = (min: number, max: number) =>
  z.preprocess(
    (value) => (typeof value === 'string' && /^[0-9]{1,9}$/.test(value) ? Number(value) : value),
    z.number().int().min(min).max(max),
  );

const fileBoolean = z.preprocess(
  (value) => (value === 'true' ? true : value === 'false' ? false : value),
  z.boolean(),
);

const scheduleValue = z
  .string()
  .refine(
    (value) => value === 'off' || isValidCron(value),
    'must be a cron pattern (5 fields, or 6 with seconds first) or "off"',
  );

const retentionEntry = z.strictObject({
  keepLast: fileInt(1, 10_000).optional(),
  gfs: z
    .strictObject({
      days: fileInt(0, 10_000),
      weeks: fileInt(0, 10_000),
      months: fileInt(0, 10_000),
      years: fileInt(0, 1_000),
    })
    .optional(),
});
export type RetentionEntry = z.infer<typeof retentionEntry>;

const unique = (values: string[]) => new Set(values).size === values.length;

const destinationList = z
  .array(
    z.string().regex(destinationNameRegex, 'lowercase letters and digits, starting with a letter'),
  )
  .min(1)
  .refine(unique, 'names a destination twice');

/** A server's WAL archive and base backups (point-in-time recovery). */
const pitrEntrySchema = z.strictObject(
  {
    enabled: fileBoolean.optional(),
    baseBackupSchedule: scheduleValue.optional(),
    cleanupSchedule: scheduleValue.optional(),
    checkpoint: z.enum(['fast', 'spread']).optional(),
    retention: retentionEntry.optional(),
    timeZone: timeZoneSchema.optional(),
    destinations: destinationList.optional(),
    encryption: fileBoolean.optional(),
    lagWarningSeconds: fileInt(10, 7 * 24 * 3600).optional(),
    retainedWarningBytes: fileInt(16 * 1024 * 1024, 2 ** 53 - 1).optional(),
    switchWalSeconds: fileInt(0, 24 * 3600).optional(),
  },
  {
    error: (issue) =>
      issue.code === 'invalid_type' && issue.input !== undefined
        ? 'must be true, false or a mapping of settings'
        : undefined,
  },
);
export type PitrEntry = z.infer<typeof pitrEntrySchema>;

/**
 * `true` for the defaults, `false` for none, or the settings. Not a union of a boolean and the
 * settings: when both fail, a union reports only "Invalid input" on `pitr`, never which key of
 * the settings is wrong.
 */
const pitrValue = z.preprocess(
  (value) =>
    value === true || value === 'true'
      ? {}
      : value === false || value === 'false'
        ? { enabled: false }
        : value,
  pitrEntrySchema,
);

export const serverEntrySchema = z.strictObject({
  url: z.string().min(1),
  password: z.string().min(1).optional(),
  passwordFile: z.string().min(1).max(4096).optional(),
  maxConcurrentJobs: fileInt(1, 64).optional(),
  pitr: pitrValue.optional(),
});
export type ServerEntry = z.infer<typeof serverEntrySchema>;

function compiles(pattern: string): boolean {
  try {
    picomatch(pattern);
    return true;
  } catch {
    return false;
  }
}

const globList = z
  .array(z.string().min(1).max(200).refine(compiles, 'must be a glob pattern such as "app_*"'))
  .max(100);

export const targetEntrySchema = z.strictObject({
  server: z.string().min(1),
  database: z
    .string()
    .refine(
      (value) => value === '*' || databaseNameSchema.safeParse(value).success,
      'must be a database name (letters, digits, _ $ -), or "*" for every database of the server',
    ),
  include: globList.optional(),
  exclude: globList.optional(),
  schedules: z
    .strictObject({
      backup: scheduleValue.optional(),
      cleanup: scheduleValue.optional(),
      verify: scheduleValue.optional(),
    })
    .optional(),
  timeZone: timeZoneSchema.optional(),
  retention: retentionEntry.optional(),
  destinations: destinationList.optional(),
  encryption: fileBoolean.optional(),
  restore: fileBoolean.optional(),
  format: backupFormatSchema.optional(),
  /** pg_dump --jobs of a directory-format backup. */
  jobs: fileInt(1, MAX_DUMP_JOBS).optional(),
  compression: compressionSchema.optional(),
  verifyRestore: fileBoolean.optional(),
  tables: z
    .strictObject({
      include: tableListSchema.optional(),
      exclude: z
        .array(tableNameSchema)
        .max(MAX_TABLES)
        .refine(unique, 'must not repeat a table')
        .optional(),
    })
    .optional(),
});
export type TargetEntry = z.infer<typeof targetEntrySchema>;

/** zod's issues as `targets file: <path>: <rule>`; zod never puts the input in its messages. */
export function parseEntry<T>(
  schema: z.ZodType<T>,
  value: unknown,
  path: FilePath,
  issues: FileIssues,
): T | undefined {
  const parsed = schema.safeParse(value, {
    error: (issue) =>
      issue.code === 'invalid_type' && issue.input === undefined ? 'is required' : undefined,
  });
  if (parsed.success) return parsed.data;
  for (const issue of parsed.error.issues) {
    const at = [...path, ...(issue.path as (string | number)[])];
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) issues.add([...at, key], 'is not a known key');
    } else {
      issues.add(at, issue.message);
    }
  }
  return undefined;
}
