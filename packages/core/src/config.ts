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

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const prefixName = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, "_" and "-" only (at most 64)');

export const configSchema = z
  .object({
    NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
    LOG_LEVEL: z
      .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
      .default('info'),
    DATABASE_URL: postgresUrl,
    MAINTENANCE_DATABASE: z.string().min(1).max(63).default('postgres'),
    REDIS_URL: redisUrl.default('redis://127.0.0.1:6379'),
    QUEUE_PREFIX: prefixName.default('pgkeep'),
    LOCK_NAMESPACE: prefixName.optional(),
    HOST: z.string().min(1).default('127.0.0.1'),
    PORT: int(0, 65535).default(5000),
    JWT_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
    JWT_PUBLIC_KEY: z.string().min(1).optional(),
    BACKUP_DIR: z.string().min(1).default('backups'),
    BACKUP_FORMAT: z.enum(['custom', 'plain']).default('custom'),
    BACKUP_COMPRESSION: z.enum(['zstd', 'gzip', 'none']).default('zstd'),
    BACKUP_ZSTD_LEVEL: int(1, 19).default(3),
    BACKUP_GZIP_LEVEL: int(1, 9).default(6),
    BACKUP_CONCURRENCY: int(1, 16).default(1),
    BACKUP_ATTEMPTS: int(1, 20).default(3),
    RESTORE_ENABLED: booleanFromEnv.default(true),
    RESTORE_JOBS: int(1, 32).default(2),
    LOCK_TIMEOUT_MS: int(1_000, 86_400_000).default(600_000),
    JOB_LOCK_DURATION_MS: int(1_000, 600_000).default(30_000),
    JOB_STALLED_INTERVAL_MS: int(1_000, 600_000).default(30_000),
    JOB_KEEP_COMPLETED: int(1, 1_000_000).default(1_000),
    JOB_KEEP_FAILED: int(1, 1_000_000).default(5_000),
    SHUTDOWN_TIMEOUT_MS: int(1_000, 3_600_000).default(30_000),
    WORKER_HEARTBEAT_MS: int(1_000, 600_000).default(10_000),
  })
  .superRefine((config, ctx) => {
    if (!config.JWT_SECRET && !config.JWT_PUBLIC_KEY) {
      ctx.addIssue({
        code: 'custom',
        path: ['JWT_SECRET'],
        message: 'JWT_SECRET (HS256) or JWT_PUBLIC_KEY (RS256/ES256) is required',
      });
    }
  });

export type Config = z.output<typeof configSchema> & { LOCK_NAMESPACE: string };

export class ConfigError extends Error {
  constructor(readonly issues: string[]) {
    super(`invalid configuration:\n${issues.map((issue) => `  - ${issue}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Pure: reads only the object it is given. Empty strings count as unset. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const cleaned: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && value.trim() !== '') cleaned[key] = value.trim();
  }
  const parsed = configSchema.safeParse(cleaned);
  if (!parsed.success) {
    // The message names the key and the rule, never the value: a value may be a secret.
    throw new ConfigError(
      parsed.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`),
    );
  }
  return { ...parsed.data, LOCK_NAMESPACE: parsed.data.LOCK_NAMESPACE ?? parsed.data.QUEUE_PREFIX };
}
