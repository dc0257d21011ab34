import { CronExpressionParser } from 'cron-parser';
import { z } from 'zod';

/**
 * Every setting of every process, parsed once from the environment at start. A bad value
 * stops the process with a message naming the key; nothing else reads `process.env`.
 */
const postgresUrl = z
  .string()
  .min(1)
  .refine((value) => {
    try {
      const url = new URL(value);
      return url.protocol === 'postgres:' || url.protocol === 'postgresql:';
    } catch {
      return false;
    }
  }, 'must be a postgres:// or postgresql:// URL');

const redisUrl = z
  .string()
  .min(1)
  .refine((value) => {
    try {
      const url = new URL(value);
      return url.protocol === 'redis:' || url.protocol === 'rediss:';
    } catch {
      return false;
    }
  }, 'must be a redis:// or rediss:// URL');

const booleanFromEnv = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'], { message: 'must be true or false' })
  .transform((value) => value === 'true' || value === '1' || value === 'yes');

export function isValidTimeZone(value: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: value });
    return true;
  } catch {
    return false;
  }
}

/** A cron pattern as BullMQ reads it: 5 fields, or 6 with seconds first. */
export function isValidCron(value: string): boolean {
  const fields = value.trim().split(/\s+/).length;
  if (fields !== 5 && fields !== 6) return false;
  try {
    CronExpressionParser.parse(value);
    return true;
  } catch {
    return false;
  }
}

export const cronSchema = z
  .string()
  .refine(isValidCron, 'must be a cron pattern (5 fields, or 6 with seconds first)');
export const timeZoneSchema = z
  .string()
  .refine(isValidTimeZone, 'must be an IANA time zone such as UTC or Europe/Lisbon');
/** A schedule from the environment: a cron pattern, or `off`. */
const scheduleFromEnv = z.union([z.literal('off'), cronSchema]);

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const prefixName = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, "_" and "-" only (at most 64)');

/** An http(s) URL without credentials in it (fetch refuses those; a secret goes in a header). */
const webhookUrl = z
  .string()
  .min(1)
  .refine((value) => {
    try {
      const url = new URL(value);
      return (url.protocol === 'http:' || url.protocol === 'https:') && !url.username;
    } catch {
      return false;
    }
  }, 'must be an http:// or https:// URL without user:password');

const emailAddress = /^[^\s@<>,;"]+@[^\s@<>,;"]+$/;
/** `backups@example.com` or `pgkeep <backups@example.com>`. */
const emailSender = z.string().refine((value) => {
  const named = /^[^<>\r\n]*<([^<>]+)>$/.exec(value);
  return emailAddress.test(named?.[1]?.trim() ?? value);
}, 'must be an email address, optionally as "Name <address>"');
/** A comma-separated list of plain addresses. */
const emailList = z
  .string()
  .transform((value) =>
    value
      .split(',')
      .map((address) => address.trim())
      .filter((address) => address !== ''),
  )
  .refine(
    (addresses) => addresses.length > 0 && addresses.every((address) => emailAddress.test(address)),
    'must be a comma-separated list of email addresses',
  );

/** A 32-byte key, base64 (standard or url-safe). The message never shows the value. */
const base64Key = z
  .string()
  .refine(
    (value) =>
      (/^[A-Za-z0-9+/]{43}=?$/.test(value) || /^[A-Za-z0-9_-]{43}=?$/.test(value)) &&
      Buffer.from(value, 'base64').length === 32,
    'must be 32 bytes in base64 (openssl rand -base64 32)',
  );

const memoryUnits = { kB: 1, MB: 1024, GB: 1024 ** 2, TB: 1024 ** 3 } as const;
/**
 * A PostgreSQL memory setting with its unit (`256MB`, `1GB`, as in postgresql.conf), at least
 * 1MB and at most what PostgreSQL takes for maintenance_work_mem (2147483647 kB).
 */
const postgresMemory = z.string().refine((value) => {
  const match = /^([1-9][0-9]{0,12})(kB|MB|GB|TB)$/.exec(value);
  if (!match) return false;
  const kB = Number(match[1]) * memoryUnits[match[2] as keyof typeof memoryUnits];
  return kB >= 1024 && kB <= 2_147_483_647;
}, 'must be a size with its unit (kB, MB, GB or TB), from 1MB to 2147483647kB, e.g. 256MB');

const destinationName = z
  .string()
  .regex(/^[a-z][a-z0-9]{0,31}$/, 'lowercase letters and digits, starting with a letter');

export const configSchema = z
  .object({
    NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
    LOG_LEVEL: z
      .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
      .default('info'),
    // One database (the target `default`), or a targets file naming many: at least one of the
    // two. With both, the file alone says what is backed up; see targets.ts.
    DATABASE_URL: postgresUrl.optional(),
    TARGETS_FILE: z.string().min(1).max(4096).optional(),
    // Where the advisory locks live; default: DATABASE_URL's server, else the file's first server.
    LOCK_DATABASE_URL: postgresUrl.optional(),
    MAINTENANCE_DATABASE: z.string().min(1).max(63).default('postgres'),
    REDIS_URL: redisUrl.default('redis://127.0.0.1:6379'),
    QUEUE_PREFIX: prefixName.default('pgkeep'),
    LOCK_NAMESPACE: prefixName.optional(),
    HOST: z.string().min(1).default('127.0.0.1'),
    PORT: int(0, 65535).default(5000),
    JWT_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
    JWT_PUBLIC_KEY: z.string().min(1).optional(),
    // A token without `exp` never stops being good: refused unless this is false.
    JWT_REQUIRE_EXP: booleanFromEnv.default(true),
    // When set, a token's `iss` must equal JWT_ISSUER and its `aud` (a string or a list) must
    // contain JWT_AUDIENCE.
    JWT_ISSUER: z.string().min(1).max(1_000).optional(),
    JWT_AUDIENCE: z.string().min(1).max(1_000).optional(),
    // When set, `exp - iat` may not exceed it (both claims then required).
    JWT_MAX_LIFETIME_SECONDS: int(1, 10 * 366 * 86_400).optional(),
    // Failed authentications (401) from one client address within the window; the next one
    // and every request of that address until the window ends get 429. 0: no limit.
    AUTH_FAILURE_LIMIT: int(0, 1_000_000).default(20),
    AUTH_FAILURE_WINDOW_MS: int(1_000, 86_400_000).default(60_000),
    // The board's sign-in cookie: `auto` marks it Secure when the request came over https.
    ADMIN_COOKIE_SECURE: z
      .enum(['auto', 'true', 'false', '1', '0', 'yes', 'no'], {
        message: 'must be auto, true or false',
      })
      .transform((value) =>
        value === 'auto' ? ('auto' as const) : value === 'true' || value === '1' || value === 'yes',
      )
      .default('auto'),
    BACKUP_DIR: z.string().min(1).default('backups'),
    BACKUP_FORMAT: z.enum(['custom', 'plain', 'directory']).default('custom'),
    // pg_dump --jobs of a directory-format backup; unset: min(4, the worker's cores).
    BACKUP_DUMP_JOBS: int(1, 32).optional(),
    BACKUP_COMPRESSION: z.enum(['zstd', 'gzip', 'none']).default('zstd'),
    BACKUP_ZSTD_LEVEL: int(1, 19).default(3),
    BACKUP_GZIP_LEVEL: int(1, 9).default(6),
    BACKUP_CONCURRENCY: int(1, 16).default(1),
    BACKUP_ATTEMPTS: int(1, 20).default(3),
    AUTO_BACKUP_ENABLED: booleanFromEnv.default(true),
    BACKUP_SCHEDULE: cronSchema.default('0 2 * * *'),
    BACKUP_CLEANUP_SCHEDULE: scheduleFromEnv.default('0 3 * * 0'),
    BACKUP_TIMEZONE: timeZoneSchema.default('UTC'),
    BACKUP_KEEP_LAST: int(1, 10_000).default(30),
    BACKUP_RETENTION: z.enum(['keep-last', 'gfs']).default('keep-last'),
    BACKUP_GFS_DAYS: int(0, 10_000).default(7),
    BACKUP_GFS_WEEKS: int(0, 10_000).default(4),
    BACKUP_GFS_MONTHS: int(0, 10_000).default(12),
    BACKUP_GFS_YEARS: int(0, 1_000).default(5),
    VERIFY_SCHEDULE: scheduleFromEnv.default('off'),
    VERIFY_RESTORE: booleanFromEnv.default(false),
    PRE_RESTORE_MAX_AGE_DAYS: int(0, 3_650).default(7),
    RESTORE_ENABLED: booleanFromEnv.default(true),
    RESTORE_JOBS: int(1, 32).default(2),
    // maintenance_work_mem of each session that loads a restore's temporary database (index
    // builds, foreign keys): one per RESTORE_JOBS at most, so up to that many times this.
    RESTORE_MAINTENANCE_WORK_MEM: postgresMemory.default('256MB'),
    // max_parallel_maintenance_workers of those sessions; unset: the server's own.
    RESTORE_PARALLEL_MAINTENANCE_WORKERS: int(0, 1024).optional(),
    // A restore whose worker stopped is run again only this soon after it was asked for.
    RESTORE_RETRY_WINDOW_MS: int(1_000, 86_400_000).default(300_000),
    LOCK_TIMEOUT_MS: int(1_000, 86_400_000).default(600_000),
    // Destructive jobs (restore, delete, clean-up) running at once over all targets.
    DESTRUCTIVE_CONCURRENCY: int(1, 64).default(1),
    // How long the list of a server's databases found for `database: "*"` targets is reused.
    DISCOVERY_CACHE_MS: int(0, 600_000).default(5_000),
    JOB_LOCK_DURATION_MS: int(1_000, 600_000).default(30_000),
    JOB_STALLED_INTERVAL_MS: int(1_000, 600_000).default(30_000),
    JOB_KEEP_COMPLETED: int(1, 1_000_000).default(1_000),
    JOB_KEEP_FAILED: int(1, 1_000_000).default(5_000),
    SHUTDOWN_TIMEOUT_MS: int(1_000, 3_600_000).default(30_000),
    WORKER_HEARTBEAT_MS: int(1_000, 600_000).default(10_000),
    // Point-in-time recovery (servers with `pitr` in the targets file): how often the WAL
    // receiver's leader publishes its status, and how long it waits before checking a server
    // that lacks a requirement again.
    // DATABASE_URL alone: point-in-time recovery of the server `default` with every default
    // (docs/pitr.md); a targets file sets it per server, with its settings.
    PITR_ENABLED: booleanFromEnv.default(false),
    PITR_STATUS_INTERVAL_MS: int(200, 600_000).default(5_000),
    PITR_RECHECK_MS: int(1_000, 3_600_000).default(60_000),
    // A point-in-time restore recovers a base backup in a temporary instance: its data
    // directory goes under PITR_SCRATCH_DIR (default: the OS temporary directory; it needs room
    // for the whole cluster) and it runs as PITR_INSTANCE_USER (default: the worker's own user,
    // or \`postgres\` when the worker runs as root, which postgres refuses).
    PITR_SCRATCH_DIR: z.string().min(1).max(80).optional(),
    PITR_INSTANCE_USER: z
      .string()
      .regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'must be an OS user name')
      .optional(),
    // GET /metrics: an admin token, or this token (Prometheus' bearer credentials), or no
    // token at all when METRICS_PUBLIC=true (then bind the API to a private address).
    METRICS_TOKEN: z.string().min(32, 'must be at least 32 characters').optional(),
    METRICS_PUBLIC: booleanFromEnv.default(false),
    // GET /api/backup/health/detail: a newest backup older than this is a warning (decimals
    // allowed: 0.5 is half an hour), free space in BACKUP_DIR below this too (0: not checked).
    HEALTH_MAX_BACKUP_AGE_HOURS: z.coerce.number().positive().max(87_600).default(24),
    HEALTH_MIN_FREE_BYTES: int(0, Number.MAX_SAFE_INTEGER).default(1024 ** 3),
    // GET /api/backup/health: an answer is reused this long, so that probes do no work each.
    HEALTH_CACHE_MS: int(0, 600_000).default(5_000),
    // Notifications of finished jobs (@pgkeep/notify): a webhook, email over SMTP, or both.
    NOTIFY_ON: z.enum(['failure', 'always']).default('failure'),
    NOTIFY_WEBHOOK_URL: webhookUrl.optional(),
    NOTIFY_WEBHOOK_SECRET: z.string().min(16, 'must be at least 16 characters').optional(),
    NOTIFY_SMTP_HOST: z.string().min(1).max(253).optional(),
    NOTIFY_SMTP_PORT: int(1, 65535).default(587),
    NOTIFY_SMTP_SECURE: booleanFromEnv.default(false),
    NOTIFY_SMTP_USER: z.string().min(1).optional(),
    NOTIFY_SMTP_PASSWORD: z.string().min(1).optional(),
    NOTIFY_EMAIL_FROM: emailSender.optional(),
    NOTIFY_EMAIL_TO: emailList.optional(),
    NOTIFY_RETRIES: int(0, 10).default(3),
    NOTIFY_RETRY_DELAY_MS: int(0, 600_000).default(1_000),
    NOTIFY_TIMEOUT_MS: int(100, 300_000).default(10_000),
    NOTIFY_SHUTDOWN_TIMEOUT_MS: int(0, 600_000).default(10_000),
    // Where copies go: `local` (BACKUP_DIR) and/or names of S3 destinations, each configured by
    // S3_<NAME>_* keys. The catalog (manifests) always lives in BACKUP_DIR as well.
    BACKUP_DESTINATIONS: z
      .string()
      .transform((value) =>
        value
          .split(',')
          .map((name) => name.trim().toLowerCase())
          .filter((name) => name !== ''),
      )
      .pipe(z.array(destinationName).min(1, 'must name at least one destination'))
      .default(['local']),
    // A copy that failed while the dump streamed is written again from the local copy.
    BACKUP_COPY_ATTEMPTS: int(1, 20).default(3),
    BACKUP_COPY_RETRY_DELAY_MS: int(0, 600_000).default(2_000),
    // At worker start: manifests found in a destination but not in BACKUP_DIR are added back.
    CATALOG_REBUILD_ON_START: booleanFromEnv.default(true),
    // Encryption at rest (AES-256-GCM in authenticated chunks): a key or a passphrase writes;
    // old ones only read, for rotation.
    BACKUP_ENCRYPTION_KEY: base64Key.optional(),
    BACKUP_ENCRYPTION_PASSPHRASE: z.string().min(12, 'must be at least 12 characters').optional(),
    BACKUP_ENCRYPTION_OLD_KEYS: z
      .string()
      .transform((value) =>
        value
          .split(',')
          .map((key) => key.trim())
          .filter((key) => key !== ''),
      )
      .pipe(z.array(base64Key))
      .default([]),
    BACKUP_ENCRYPTION_OLD_PASSPHRASE: z.string().min(1).optional(),
    // Authenticates manifests (an HMAC in each). Unset with encryption on: derived from the
    // encryption key or passphrase. Unset with encryption off: manifests are not signed.
    CATALOG_KEY: base64Key.optional(),
  })
  .superRefine((config, ctx) => {
    if (
      config.BACKUP_RETENTION === 'gfs' &&
      config.BACKUP_GFS_DAYS +
        config.BACKUP_GFS_WEEKS +
        config.BACKUP_GFS_MONTHS +
        config.BACKUP_GFS_YEARS ===
        0
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['BACKUP_GFS_DAYS'],
        message: 'a GFS policy must keep something',
      });
    }
    if (config.NOTIFY_WEBHOOK_SECRET && !config.NOTIFY_WEBHOOK_URL) {
      ctx.addIssue({
        code: 'custom',
        path: ['NOTIFY_WEBHOOK_SECRET'],
        message: 'is set but NOTIFY_WEBHOOK_URL is not',
      });
    }
    // Email needs a server, a sender and recipients; any one alone is a half-done setup.
    const emailKeys = {
      NOTIFY_SMTP_HOST: config.NOTIFY_SMTP_HOST,
      NOTIFY_EMAIL_FROM: config.NOTIFY_EMAIL_FROM,
      NOTIFY_EMAIL_TO: config.NOTIFY_EMAIL_TO,
    };
    if (
      Object.values(emailKeys).some(Boolean) ||
      config.NOTIFY_SMTP_USER ||
      config.NOTIFY_SMTP_PASSWORD
    ) {
      for (const [key, value] of Object.entries(emailKeys)) {
        if (!value) {
          ctx.addIssue({
            code: 'custom',
            path: [key],
            message:
              'email notifications need NOTIFY_SMTP_HOST, NOTIFY_EMAIL_FROM and NOTIFY_EMAIL_TO together',
          });
        }
      }
    }
    if (config.BACKUP_ENCRYPTION_KEY && config.BACKUP_ENCRYPTION_PASSPHRASE) {
      ctx.addIssue({
        code: 'custom',
        path: ['BACKUP_ENCRYPTION_PASSPHRASE'],
        message: 'set BACKUP_ENCRYPTION_KEY or BACKUP_ENCRYPTION_PASSPHRASE, not both',
      });
    }
    if (new Set(config.BACKUP_DESTINATIONS).size !== config.BACKUP_DESTINATIONS.length) {
      ctx.addIssue({
        code: 'custom',
        path: ['BACKUP_DESTINATIONS'],
        message: 'names a destination twice',
      });
    }
    if (Boolean(config.NOTIFY_SMTP_USER) !== Boolean(config.NOTIFY_SMTP_PASSWORD)) {
      ctx.addIssue({
        code: 'custom',
        path: [config.NOTIFY_SMTP_USER ? 'NOTIFY_SMTP_PASSWORD' : 'NOTIFY_SMTP_USER'],
        message: 'NOTIFY_SMTP_USER and NOTIFY_SMTP_PASSWORD go together',
      });
    }
  });

/** One S3-compatible destination, from its `S3_<NAME>_*` keys. */
export interface S3DestinationSettings {
  name: string;
  bucket: string;
  region: string;
  endpoint?: string;
  prefix: string;
  forcePathStyle: boolean;
  accessKeyId?: string;
  secretAccessKey?: string;
  sessionToken?: string;
  required: boolean;
  checksums: 'when_supported' | 'when_required';
  partSizeMinBytes: number;
  queueSize: number;
  maxAttempts: number;
}

const s3Settings = z
  .object({
    BUCKET: z
      .string()
      .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be an S3 bucket name (3-63 chars)'),
    REGION: z.string().min(1).max(64).default('us-east-1'),
    ENDPOINT: webhookUrl.optional(),
    PREFIX: z
      .string()
      .regex(/^[A-Za-z0-9!_.*'()/-]{0,512}$/, "letters, digits and !_.*'()/- only")
      .refine(
        (value) => !value.startsWith('/') && !value.includes('..'),
        'must be a relative key prefix',
      )
      .default(''),
    FORCE_PATH_STYLE: booleanFromEnv.default(false),
    ACCESS_KEY_ID: z.string().min(1).optional(),
    SECRET_ACCESS_KEY: z.string().min(1).optional(),
    SESSION_TOKEN: z.string().min(1).optional(),
    REQUIRED: booleanFromEnv.default(true),
    CHECKSUMS: z.enum(['when_supported', 'when_required']).default('when_supported'),
    PART_SIZE_MB: int(5, 5_120).default(16),
    QUEUE_SIZE: int(1, 16).default(2),
    MAX_ATTEMPTS: int(1, 20).default(3),
  })
  .refine((value) => Boolean(value.ACCESS_KEY_ID) === Boolean(value.SECRET_ACCESS_KEY), {
    message: 'ACCESS_KEY_ID and SECRET_ACCESS_KEY go together',
    path: ['SECRET_ACCESS_KEY'],
  });

/** Reads `S3_<NAME>_*` for every destination named in BACKUP_DESTINATIONS but `local`. */
function s3Destinations(
  names: string[],
  env: Record<string, string>,
  issues: string[],
): S3DestinationSettings[] {
  const destinations: S3DestinationSettings[] = [];
  for (const name of names) {
    if (name === 'local') continue;
    const prefix = `S3_${name.toUpperCase()}_`;
    const raw: Record<string, string> = {};
    for (const [key, value] of Object.entries(env)) {
      if (key.startsWith(prefix)) raw[key.slice(prefix.length)] = value;
    }
    const parsed = s3Settings.safeParse(raw);
    if (!parsed.success) {
      for (const issue of parsed.error.issues) {
        issues.push(`${prefix}${issue.path.join('.')}: ${issue.message}`);
      }
      continue;
    }
    const value = parsed.data;
    let keyPrefix = value.PREFIX;
    if (keyPrefix !== '' && !keyPrefix.endsWith('/')) keyPrefix = `${keyPrefix}/`;
    destinations.push({
      name,
      bucket: value.BUCKET,
      region: value.REGION,
      ...(value.ENDPOINT ? { endpoint: value.ENDPOINT } : {}),
      prefix: keyPrefix,
      forcePathStyle: value.FORCE_PATH_STYLE,
      ...(value.ACCESS_KEY_ID ? { accessKeyId: value.ACCESS_KEY_ID } : {}),
      ...(value.SECRET_ACCESS_KEY ? { secretAccessKey: value.SECRET_ACCESS_KEY } : {}),
      ...(value.SESSION_TOKEN ? { sessionToken: value.SESSION_TOKEN } : {}),
      required: value.REQUIRED,
      checksums: value.CHECKSUMS,
      partSizeMinBytes: value.PART_SIZE_MB * 1024 * 1024,
      queueSize: value.QUEUE_SIZE,
      maxAttempts: value.MAX_ATTEMPTS,
    });
  }
  return destinations;
}

export type Config = z.output<typeof configSchema> & {
  LOCK_NAMESPACE: string;
  /**
   * The prefix of every Redis key: QUEUE_PREFIX in braces, a Redis Cluster hash tag, so that
   * all of a deployment's keys (BullMQ's Lua scripts touch many at once) live in one slot.
   */
  REDIS_PREFIX: string;
  /** The S3 destinations of BACKUP_DESTINATIONS, in its order. */
  S3_DESTINATIONS: S3DestinationSettings[];
  /** Names with S3_<NAME>_BUCKET set but missing from BACKUP_DESTINATIONS (logged at start). */
  UNUSED_S3_DESTINATIONS: string[];
};

export class ConfigError extends Error {
  constructor(readonly issues: string[]) {
    super(`invalid configuration:\n${issues.map((issue) => `  - ${issue}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/**
 * Pure: reads only the object it is given. Empty strings count as unset. `requireAuth` (the
 * API's case) demands JWT_SECRET or JWT_PUBLIC_KEY; the worker checks no tokens.
 */
export function loadConfig(
  env: Record<string, string | undefined>,
  options: { requireAuth: boolean } = { requireAuth: true },
): Config {
  const cleaned: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && value.trim() !== '') cleaned[key] = value.trim();
  }
  const parsed = configSchema.safeParse(cleaned);
  // The messages name the key and the rule, never the value: a value may be a secret.
  const issues = parsed.success
    ? []
    : parsed.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`);
  // Checked here, not in the schema's refinement, which runs only once every key has parsed:
  // a missing database is reported along with any other bad key.
  if (!cleaned.DATABASE_URL && !cleaned.TARGETS_FILE) {
    issues.push('DATABASE_URL: set DATABASE_URL (one database) or TARGETS_FILE (many)');
  }
  if (options.requireAuth && !cleaned.JWT_SECRET && !cleaned.JWT_PUBLIC_KEY) {
    issues.push('JWT_SECRET: JWT_SECRET (HS256) or JWT_PUBLIC_KEY (RS256/ES256) is required');
  }
  const s3 = parsed.success ? s3Destinations(parsed.data.BACKUP_DESTINATIONS, cleaned, issues) : [];
  if (!parsed.success || issues.length > 0) throw new ConfigError(issues);
  const listed = new Set(parsed.data.BACKUP_DESTINATIONS);
  const unused = Object.keys(cleaned)
    .map((key) => /^S3_([A-Z][A-Z0-9]{0,31})_BUCKET$/.exec(key)?.[1]?.toLowerCase())
    .filter((name): name is string => name !== undefined && !listed.has(name));
  return {
    ...parsed.data,
    LOCK_NAMESPACE: parsed.data.LOCK_NAMESPACE ?? parsed.data.QUEUE_PREFIX,
    REDIS_PREFIX: `{${parsed.data.QUEUE_PREFIX}}`,
    S3_DESTINATIONS: s3,
    UNUSED_S3_DESTINATIONS: unused,
  };
}
