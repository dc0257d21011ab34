import { CronExpressionParser } from 'cron-parser';
import { z } from 'zod';
import { booleanFromEnv, int, webhookUrl } from './env-values.js';
import { type S3DestinationSettings, s3Destinations, unusedS3Destinations } from './s3-config.js';

export { type S3DestinationSettings, s3DestinationSchema } from './s3-config.js';

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
  }, 'must be a postgres:// or postgresql:// URL')
  .meta({ valueType: 'postgres:// URL' });

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
  }, 'must be a redis:// or rediss:// URL')
  .meta({ valueType: 'redis:// or rediss:// URL' });

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
// `valueType`: how docs/reference/configuration.md names what a key takes (scripts/gen-docs.ts).
// The environment's own copies of the shared cron and time-zone schemas carry it.
const cronFromEnv = cronSchema.meta({ valueType: 'cron (5 fields, or 6 with seconds first)' });
const timeZoneFromEnv = timeZoneSchema.meta({ valueType: 'IANA time zone' });
/** A schedule from the environment: a cron pattern, or `off`. */
const scheduleFromEnv = z
  .union([z.literal('off'), cronSchema])
  .meta({ valueType: 'cron (5 or 6 fields), or `off`' });

const prefixName = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, "_" and "-" only (at most 64)')
  .meta({ valueType: 'letters, digits, `_`, `-` (at most 64)' });

const emailAddress = /^[^\s@<>,;"]+@[^\s@<>,;"]+$/;
/** `backups@example.com` or `pgkeep <backups@example.com>`. */
const emailSender = z
  .string()
  .refine((value) => {
    const named = /^[^<>\r\n]*<([^<>]+)>$/.exec(value);
    return emailAddress.test(named?.[1]?.trim() ?? value);
  }, 'must be an email address, optionally as "Name <address>"')
  .meta({ valueType: 'email address, or `Name <address>`' });
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
  )
  .meta({ valueType: 'comma-separated email addresses' });

/** A 32-byte key, base64 (standard or url-safe). The message never shows the value. */
const base64Key = z
  .string()
  .refine(
    (value) =>
      (/^[A-Za-z0-9+/]{43}=?$/.test(value) || /^[A-Za-z0-9_-]{43}=?$/.test(value)) &&
      Buffer.from(value, 'base64').length === 32,
    'must be 32 bytes in base64 (openssl rand -base64 32)',
  )
  .meta({ valueType: '32 bytes in base64 (`openssl rand -base64 32`)' });

const memoryUnits = { kB: 1, MB: 1024, GB: 1024 ** 2, TB: 1024 ** 3 } as const;
/**
 * A PostgreSQL memory setting with its unit (`256MB`, `1GB`, as in postgresql.conf), at least
 * 1MB and at most what PostgreSQL takes for maintenance_work_mem (2147483647 kB).
 */
const postgresMemory = z
  .string()
  .refine((value) => {
    const match = /^([1-9][0-9]{0,12})(kB|MB|GB|TB)$/.exec(value);
    if (!match) return false;
    const kB = Number(match[1]) * memoryUnits[match[2] as keyof typeof memoryUnits];
    return kB >= 1024 && kB <= 2_147_483_647;
  }, 'must be a size with its unit (kB, MB, GB or TB), from 1MB to 2147483647kB, e.g. 256MB')
  .meta({ valueType: 'size with unit (`kB`, `MB`, `GB`, `TB`), 1MB–2147483647kB' });

const destinationName = z
  .string()
  .regex(/^[a-z][a-z0-9]{0,31}$/, 'lowercase letters and digits, starting with a letter');

export const configSchema = z
  .object({
    NODE_ENV: z
      .enum(['development', 'production', 'test'])
      .default('development')
      .describe('The runtime mode.'),
    LOG_LEVEL: z
      .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
      .default('info')
      .describe('The lowest level written to the log.'),
    LOG_FORMAT: z
      .enum(['json', 'pretty'], { message: 'must be json or pretty' })
      .default('json')
      .describe(
        'How log lines are written: `json` (one JSON object a line, for a log collector) or `pretty` (coloured, human-readable lines, for a person at a terminal; `npm run dev` uses it unless this is set). Secrets are redacted in both.',
      ),
    // One database (the target `default`), or a targets file naming many: at least one of the
    // two. With both, the file alone says what is backed up; see targets.ts.
    DATABASE_URL: postgresUrl
      .optional()
      .describe(
        'The database to back up (target `default`); its password reaches pg_dump through the environment only, `?sslmode=` is honoured. Required unless `TARGETS_FILE` is set.',
      ),
    TARGETS_FILE: z
      .string()
      .min(1)
      .max(4096)
      .optional()
      .describe(
        'A YAML or JSON file of servers and targets (docs/targets.md); with it, the file alone says what is backed up.',
      ),
    // Where the advisory locks live; default: DATABASE_URL's server, else the file's first server.
    LOCK_DATABASE_URL: postgresUrl
      .optional()
      .describe(
        "Where the advisory locks live (its path is the database); default: `DATABASE_URL`'s server, else the targets file's first server.",
      ),
    MAINTENANCE_DATABASE: z
      .string()
      .min(1)
      .max(63)
      .default('postgres')
      .describe(
        'Database on the same server from which restores swap databases and where the advisory locks are taken.',
      ),
    REDIS_URL: redisUrl
      .default('redis://127.0.0.1:6379')
      .describe('Redis for queues and job state; run it with `maxmemory-policy noeviction`.'),
    QUEUE_PREFIX: prefixName
      .default('pgkeep')
      .describe(
        'Prefix of every Redis key (as the hash tag `{QUEUE_PREFIX}:`); deployments sharing one Redis use different ones.',
      ),
    LOCK_NAMESPACE: prefixName
      .optional()
      .describe(
        'Namespace of the advisory locks (default: `QUEUE_PREFIX`); deployments sharing one PostgreSQL server use different ones.',
      ),
    HOST: z
      .string()
      .min(1)
      .default('127.0.0.1')
      .describe('Address the API listens on (`0.0.0.0` for all).'),
    PORT: int(0, 65535).default(5000).describe('Port of the API.'),
    JWT_SECRET: z
      .string()
      .min(32, 'must be at least 32 characters')
      .optional()
      .describe(
        'HS256 secret shared with the panel. The API needs this or `JWT_PUBLIC_KEY`; the worker reads no token and needs neither.',
      ),
    JWT_PUBLIC_KEY: z
      .string()
      .min(1)
      .optional()
      .describe('PEM public key for RS256/ES256 tokens; when set, HS256 tokens are refused.'),
    // A token without `exp` never stops being good: refused unless this is false.
    JWT_REQUIRE_EXP: booleanFromEnv
      .default(true)
      .describe('Tokens without `exp` are refused (401); `false` accepts them.'),
    // When set, a token's `iss` must equal JWT_ISSUER and its `aud` (a string or a list) must
    // contain JWT_AUDIENCE.
    JWT_ISSUER: z
      .string()
      .min(1)
      .max(1_000)
      .optional()
      .describe("When set, a token's `iss` must equal it (`npm run token` adds it)."),
    JWT_AUDIENCE: z
      .string()
      .min(1)
      .max(1_000)
      .optional()
      .describe(
        "When set, a token's `aud` (a string or a list) must contain it (`npm run token` adds it).",
      ),
    // When set, `exp - iat` may not exceed it (both claims then required).
    JWT_MAX_LIFETIME_SECONDS: int(1, 10 * 366 * 86_400)
      .optional()
      .describe("When set, a token's `exp - iat` may not exceed it (`iat` then required)."),
    // Failed authentications (401) from one client address within the window; the next one
    // and every request of that address until the window ends get 429. 0: no limit.
    AUTH_FAILURE_LIMIT: int(0, 1_000_000)
      .default(20)
      .describe(
        'Failed authentications per client address within `AUTH_FAILURE_WINDOW_MS`; beyond it, 429 `TOO_MANY_AUTH_FAILURES` until the window ends. `0`: no limit.',
      ),
    AUTH_FAILURE_WINDOW_MS: int(1_000, 86_400_000)
      .default(60_000)
      .describe('The window of `AUTH_FAILURE_LIMIT`.'),
    // The board's sign-in cookie: `auto` marks it Secure when the request came over https.
    ADMIN_COOKIE_SECURE: z
      .enum(['auto', 'true', 'false', '1', '0', 'yes', 'no'], {
        message: 'must be auto, true or false',
      })
      .transform((value) =>
        value === 'auto' ? ('auto' as const) : value === 'true' || value === '1' || value === 'yes',
      )
      .meta({ valueType: '`auto` or boolean' })
      .default('auto')
      .describe(
        "The board's sign-in cookie is `Secure`: `auto` when the request came over https; `true` behind a proxy that ends TLS.",
      ),
    BACKUP_DIR: z
      .string()
      .min(1)
      .default('backups')
      .describe(
        'Directory of backups and manifests (the catalog), relative to the working directory; created if missing.',
      ),
    BACKUP_FORMAT: z
      .enum(['custom', 'plain', 'directory'])
      .default('custom')
      .describe(
        'Default format: `custom` (`pg_dump -Fc`, restorable table by table), `plain` (SQL) or `directory` (`pg_dump -Fd --jobs`, stored as one tar; docs/parallel-dumps.md).',
      ),
    BACKUP_DUMP_JOBS: int(1, 32)
      .optional()
      .describe(
        "pg_dump `--jobs` of a directory-format backup; unset: min(4, the worker's cores).",
      ),
    BACKUP_COMPRESSION: z
      .enum(['zstd', 'gzip', 'none'])
      .default('zstd')
      .describe('Default compression (zstd is multi-threaded).'),
    BACKUP_ZSTD_LEVEL: int(1, 19).default(3).describe('zstd compression level.'),
    BACKUP_GZIP_LEVEL: int(1, 9).default(6).describe('gzip compression level.'),
    BACKUP_CONCURRENCY: int(1, 16).default(1).describe('Backups one worker runs side by side.'),
    BACKUP_ATTEMPTS: int(1, 20)
      .default(3)
      .describe(
        'Tries of a backup whose failure may pass (lost connection, lock timeout); retries wait 30 s, then longer.',
      ),
    AUTO_BACKUP_ENABLED: booleanFromEnv.default(true).describe('The scheduled backup on or off.'),
    BACKUP_SCHEDULE: cronFromEnv.default('0 2 * * *').describe('When scheduled backups run.'),
    BACKUP_CLEANUP_SCHEDULE: scheduleFromEnv
      .default('0 3 * * 0')
      .describe('When the scheduled clean-up (retention) runs, or `off`.'),
    BACKUP_TIMEZONE: timeZoneFromEnv
      .default('UTC')
      .describe('Time zone of every schedule and of GFS calendar periods.'),
    BACKUP_KEEP_LAST: int(1, 10_000)
      .default(30)
      .describe('`keep-last` retention: how many of the newest backups the clean-up keeps.'),
    BACKUP_RETENTION: z
      .enum(['keep-last', 'gfs'])
      .default('keep-last')
      .describe('Retention of the scheduled clean-up: keep the last N, or grandfather-father-son.'),
    BACKUP_GFS_DAYS: int(0, 10_000)
      .default(7)
      .describe('`gfs` retention: daily backups kept (0 turns the rule off).'),
    BACKUP_GFS_WEEKS: int(0, 10_000)
      .default(4)
      .describe('`gfs` retention: weekly (ISO week) backups kept (0 turns the rule off).'),
    BACKUP_GFS_MONTHS: int(0, 10_000)
      .default(12)
      .describe('`gfs` retention: monthly backups kept (0 turns the rule off).'),
    BACKUP_GFS_YEARS: int(0, 1_000)
      .default(5)
      .describe('`gfs` retention: yearly backups kept (0 turns the rule off).'),
    VERIFY_SCHEDULE: scheduleFromEnv
      .default('off')
      .describe('When the newest backup is verified, or `off`.'),
    VERIFY_RESTORE: booleanFromEnv
      .default(false)
      .describe('Scheduled verifies also restore into a scratch database and check row counts.'),
    PRE_RESTORE_MAX_AGE_DAYS: int(0, 3_650)
      .default(7)
      .describe(
        'The clean-up drops databases replaced by restores after this many days; 0 keeps them.',
      ),
    RESTORE_ENABLED: booleanFromEnv
      .default(true)
      .describe(
        '`false` refuses every restore (403 `RESTORE_DISABLED`), in the API and in the worker.',
      ),
    RESTORE_JOBS: int(1, 32)
      .default(2)
      .describe('Parallel jobs of `pg_restore -j` for custom archives.'),
    // maintenance_work_mem of each session that loads a restore's temporary database (index
    // builds, foreign keys): one per RESTORE_JOBS at most, so up to that many times this.
    RESTORE_MAINTENANCE_WORK_MEM: postgresMemory
      .default('256MB')
      .describe(
        "`maintenance_work_mem` of each session loading a restore's temporary database; up to `RESTORE_JOBS` times this in all.",
      ),
    // max_parallel_maintenance_workers of those sessions. 0: pg_restore's RESTORE_JOBS already
    // build that many indexes at once, and workers per build on top of them crowd the cores
    // (bench/experiments/restore-load-settings.ts: 0.91x the time with 0, 1.04x with 2).
    RESTORE_PARALLEL_MAINTENANCE_WORKERS: int(0, 1024)
      .default(0)
      .describe(
        '`max_parallel_maintenance_workers` of those sessions: parallel workers per index build, on top of `RESTORE_JOBS` builds at once. Raise it where the server has cores to spare during a restore.',
      ),
    // A restore whose worker stopped is run again only this soon after it was asked for.
    RESTORE_RETRY_WINDOW_MS: int(1_000, 86_400_000)
      .default(300_000)
      .describe(
        'A restore whose worker stopped runs again only this soon after its request; later it fails `RESTORE_INTERRUPTED`.',
      ),
    LOCK_TIMEOUT_MS: int(1_000, 86_400_000)
      .default(600_000)
      .describe(
        'How long a job waits for a lock or a server slot before it fails with `LOCK_TIMEOUT` (and is retried).',
      ),
    // Destructive jobs (restore, delete, clean-up) running at once over all targets.
    DESTRUCTIVE_CONCURRENCY: int(1, 64)
      .default(1)
      .describe('Destructive jobs (restore, delete, clean-up) running at once over all targets.'),
    // How long the list of a server's databases found for `database: "*"` targets is reused.
    DISCOVERY_CACHE_MS: int(0, 600_000)
      .default(5_000)
      .describe(
        'How long the list of a server\'s databases is reused for targets with `database: "*"`.',
      ),
    JOB_LOCK_DURATION_MS: int(1_000, 600_000)
      .default(30_000)
      .describe('BullMQ job lock: a worker that dies is noticed within about this long.'),
    JOB_STALLED_INTERVAL_MS: int(1_000, 600_000)
      .default(30_000)
      .describe('How often workers look for jobs whose worker died.'),
    JOB_KEEP_COMPLETED: int(1, 1_000_000)
      .default(1_000)
      .describe('Completed jobs kept in Redis for polling.'),
    JOB_KEEP_FAILED: int(1, 1_000_000)
      .default(5_000)
      .describe('Failed jobs kept in Redis for polling.'),
    SHUTDOWN_TIMEOUT_MS: int(1_000, 3_600_000)
      .default(30_000)
      .describe(
        'Grace period after SIGTERM/SIGINT before running jobs are aborted (and queued again).',
      ),
    WORKER_HEARTBEAT_MS: int(1_000, 600_000)
      .default(10_000)
      .describe(
        'How often a worker announces itself (with its pg_dump version); it counts as gone after three missed beats.',
      ),
    // Point-in-time recovery (servers with `pitr` in the targets file): how often the WAL
    // receiver's leader publishes its status, and how long it waits before checking a server
    // that lacks a requirement again.
    // DATABASE_URL alone: point-in-time recovery of the server `default` with every default
    // (docs/pitr.md); a targets file sets it per server, with its settings.
    PITR_ENABLED: booleanFromEnv
      .default(false)
      .describe(
        'Without a targets file: point-in-time recovery of the server of `DATABASE_URL`, with every default (docs/pitr.md).',
      ),
    PITR_STATUS_INTERVAL_MS: int(200, 600_000)
      .default(5_000)
      .describe("How often the WAL receiver's leader publishes its status."),
    PITR_RECHECK_MS: int(1_000, 3_600_000)
      .default(60_000)
      .describe(
        'How long the leader waits before checking again a server that lacks a PITR requirement.',
      ),
    // A point-in-time restore recovers a base backup in a temporary instance: its data
    // directory goes under PITR_SCRATCH_DIR (default: the OS temporary directory; it needs room
    // for the whole cluster) and it runs as PITR_INSTANCE_USER (default: the worker's own user,
    // or \`postgres\` when the worker runs as root, which postgres refuses).
    PITR_SCRATCH_DIR: z
      .string()
      .min(1)
      .max(80)
      .optional()
      .describe(
        "Where a PITR restore's temporary instance keeps its data directory (room for the whole cluster); default: the OS temporary directory.",
      ),
    PITR_INSTANCE_USER: z
      .string()
      .regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'must be an OS user name')
      .optional()
      .describe(
        "OS user of the temporary instance; default: the worker's own user, or `postgres` when the worker runs as root.",
      ),
    // GET /metrics: an admin token, or this token (Prometheus' bearer credentials), or no
    // token at all when METRICS_PUBLIC=true (then bind the API to a private address).
    METRICS_TOKEN: z
      .string()
      .min(32, 'must be at least 32 characters')
      .optional()
      .describe(
        "Bearer token that may read `GET /metrics` besides an admin's JWT (give it to Prometheus).",
      ),
    METRICS_PUBLIC: booleanFromEnv
      .default(false)
      .describe(
        '`GET /metrics` needs no token; then bind the API (`HOST`) to a private address only.',
      ),
    // GET /api/backup/health/detail: a newest backup older than this is a warning (decimals
    // allowed: 0.5 is half an hour), free space in BACKUP_DIR below this too (0: not checked).
    HEALTH_MAX_BACKUP_AGE_HOURS: z.coerce
      .number()
      .positive()
      .max(87_600)
      .default(24)
      .describe(
        'Health detail: a newest backup older than this is a warning (`BACKUP_TOO_OLD`); `0.5` is 30 minutes.',
      ),
    HEALTH_MIN_FREE_BYTES: int(0, Number.MAX_SAFE_INTEGER)
      .default(1024 ** 3)
      .describe(
        'Health detail: less free space than this in `BACKUP_DIR` is a warning (`LOW_DISK_SPACE`); `0` turns the check off.',
      ),
    // GET /api/backup/health: an answer is reused this long, so that probes do no work each.
    HEALTH_CACHE_MS: int(0, 600_000)
      .default(5_000)
      .describe(
        'The public `GET /api/backup/health` reuses an answer this long; `0`: only probes during a check share it.',
      ),
    // Notifications of finished jobs (@pgkeep/notify): a webhook, email over SMTP, or both.
    NOTIFY_ON: z
      .enum(['failure', 'always'])
      .default('failure')
      .describe('Announce failed jobs only, or successes too.'),
    NOTIFY_WEBHOOK_URL: webhookUrl
      .optional()
      .describe('URL to POST notifications to (a Slack incoming-webhook URL works as is).'),
    NOTIFY_WEBHOOK_SECRET: z
      .string()
      .min(16, 'must be at least 16 characters')
      .optional()
      .describe(
        'When set, every webhook request is signed (`X-Pgkeep-Signature`); needs `NOTIFY_WEBHOOK_URL`.',
      ),
    NOTIFY_SMTP_HOST: z
      .string()
      .min(1)
      .max(253)
      .optional()
      .describe(
        'SMTP server; email needs this, `NOTIFY_EMAIL_FROM` and `NOTIFY_EMAIL_TO` together.',
      ),
    NOTIFY_SMTP_PORT: int(1, 65535).default(587).describe('SMTP port.'),
    NOTIFY_SMTP_SECURE: booleanFromEnv
      .default(false)
      .describe(
        '`true`: TLS from the first byte (port 465); `false`: STARTTLS when offered, and required when a user is set.',
      ),
    NOTIFY_SMTP_USER: z
      .string()
      .min(1)
      .optional()
      .describe(
        'SMTP login, with `NOTIFY_SMTP_PASSWORD` (both or neither); credentials only ever go over TLS.',
      ),
    NOTIFY_SMTP_PASSWORD: z.string().min(1).optional().describe('SMTP password.'),
    NOTIFY_EMAIL_FROM: emailSender.optional().describe('Sender of notification emails.'),
    NOTIFY_EMAIL_TO: emailList
      .optional()
      .describe('Recipients of notification emails; one message goes to all of them.'),
    NOTIFY_RETRIES: int(0, 10).default(3).describe('Attempts of a notification after the first.'),
    NOTIFY_RETRY_DELAY_MS: int(0, 600_000)
      .default(1_000)
      .describe(
        'Wait before the first retry of a notification; each later wait is four times longer.',
      ),
    NOTIFY_TIMEOUT_MS: int(100, 300_000)
      .default(10_000)
      .describe('Limit of one notification attempt (connection, answer, SMTP dialogue).'),
    NOTIFY_SHUTDOWN_TIMEOUT_MS: int(0, 600_000)
      .default(10_000)
      .describe('How long a stopping worker waits for notifications in flight.'),
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
      .meta({ valueType: 'comma-separated names: `local` and S3 destinations' })
      .default(['local'])
      .describe(
        'Where copies go: `local` (`BACKUP_DIR`) and names of S3 destinations, each set by its `S3_<NAME>_*` keys.',
      ),
    // A copy that failed while the dump streamed is written again from the local copy.
    BACKUP_COPY_ATTEMPTS: int(1, 20)
      .default(3)
      .describe('Writes of a copy that failed while the dump streamed, again from the local copy.'),
    BACKUP_COPY_RETRY_DELAY_MS: int(0, 600_000)
      .default(2_000)
      .describe('Wait before the first of those writes; the n-th waits n times this.'),
    // At worker start: manifests found in a destination but not in BACKUP_DIR are added back.
    CATALOG_REBUILD_ON_START: booleanFromEnv
      .default(true)
      .describe(
        'At worker start, manifests found in a destination but not in `BACKUP_DIR` are added back.',
      ),
    // Encryption at rest (AES-256-GCM in authenticated chunks): a key or a passphrase writes;
    // old ones only read, for rotation.
    BACKUP_ENCRYPTION_KEY: base64Key
      .optional()
      .describe(
        'Encrypts new backups (AES-256-GCM in authenticated chunks). Not with `BACKUP_ENCRYPTION_PASSPHRASE`.',
      ),
    BACKUP_ENCRYPTION_PASSPHRASE: z
      .string()
      .min(12, 'must be at least 12 characters')
      .optional()
      .describe(
        'Encrypts new backups with a key derived by scrypt. Not with `BACKUP_ENCRYPTION_KEY`.',
      ),
    BACKUP_ENCRYPTION_OLD_KEYS: z
      .string()
      .transform((value) =>
        value
          .split(',')
          .map((key) => key.trim())
          .filter((key) => key !== ''),
      )
      .pipe(z.array(base64Key))
      .meta({ valueType: 'comma-separated keys, 32 bytes in base64 each' })
      .default([])
      .describe('Keys that only decrypt: older backups after a rotation.'),
    BACKUP_ENCRYPTION_OLD_PASSPHRASE: z
      .string()
      .min(1)
      .optional()
      .describe('A passphrase that only decrypts: older backups after a rotation.'),
    // Authenticates manifests (an HMAC in each). Unset with encryption on: derived from the
    // encryption key or passphrase. Unset with encryption off: manifests are not signed.
    CATALOG_KEY: base64Key
      .optional()
      .describe(
        'Signs manifests (an HMAC in each); unset with encryption on: derived from the encryption key or passphrase; with encryption off: manifests are not signed.',
      ),
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
  const unused = unusedS3Destinations(parsed.data.BACKUP_DESTINATIONS, cleaned);
  return {
    ...parsed.data,
    LOCK_NAMESPACE: parsed.data.LOCK_NAMESPACE ?? parsed.data.QUEUE_PREFIX,
    REDIS_PREFIX: `{${parsed.data.QUEUE_PREFIX}}`,
    S3_DESTINATIONS: s3,
    UNUSED_S3_DESTINATIONS: unused,
  };
}
