import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.js';

const secret = 'a-very-long-hs256-secret-of-40-characters!';
const minimal = {
  DATABASE_URL: 'postgres://pgkeep:pw@db.example:5432/app',
  JWT_SECRET: secret,
};

function configError(env: Record<string, string | undefined>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('loadConfig accepted an invalid environment');
}

describe('loadConfig', () => {
  it('gives the documented defaults for a minimal environment', () => {
    const config = loadConfig(minimal);
    expect(config.PORT).toBe(5000);
    expect(config.BACKUP_DIR).toBe('backups');
    expect(config.BACKUP_COMPRESSION).toBe('zstd');
    expect(config.BACKUP_FORMAT).toBe('custom');
    expect(config.QUEUE_PREFIX).toBe('pgkeep');
    expect(config.LOCK_NAMESPACE).toBe('pgkeep');
    expect(config.REDIS_URL).toBe('redis://127.0.0.1:6379');
    expect(config.MAINTENANCE_DATABASE).toBe('postgres');
    expect(config.DATABASE_URL).toBe(minimal.DATABASE_URL);
    expect(config.JWT_SECRET).toBe(secret);
    expect(config.LOG_FORMAT).toBe('json');
    expect(loadConfig({ ...minimal, LOG_FORMAT: 'pretty' }).LOG_FORMAT).toBe('pretty');
  });

  it('requires tokens to expire, limits failed authentications and caches health by default', () => {
    const config = loadConfig(minimal);
    expect(config.JWT_REQUIRE_EXP).toBe(true);
    expect(config.JWT_ISSUER).toBeUndefined();
    expect(config.JWT_AUDIENCE).toBeUndefined();
    expect(config.JWT_MAX_LIFETIME_SECONDS).toBeUndefined();
    expect(config.AUTH_FAILURE_LIMIT).toBe(20);
    expect(config.AUTH_FAILURE_WINDOW_MS).toBe(60_000);
    expect(config.HEALTH_CACHE_MS).toBe(5_000);
    const custom = loadConfig({
      ...minimal,
      JWT_REQUIRE_EXP: 'false',
      JWT_ISSUER: 'https://panel.example.com',
      JWT_AUDIENCE: 'pgkeep',
      JWT_MAX_LIFETIME_SECONDS: '3600',
      AUTH_FAILURE_LIMIT: '0',
    });
    expect(custom).toMatchObject({
      JWT_REQUIRE_EXP: false,
      JWT_ISSUER: 'https://panel.example.com',
      JWT_AUDIENCE: 'pgkeep',
      JWT_MAX_LIFETIME_SECONDS: 3600,
      AUTH_FAILURE_LIMIT: 0,
    });
  });

  it('defaults LOCK_NAMESPACE to the queue prefix, and keeps an explicit one', () => {
    expect(loadConfig({ ...minimal, QUEUE_PREFIX: 'panel_a' }).LOCK_NAMESPACE).toBe('panel_a');
    expect(
      loadConfig({ ...minimal, QUEUE_PREFIX: 'panel_a', LOCK_NAMESPACE: 'shared' }).LOCK_NAMESPACE,
    ).toBe('shared');
  });

  it('parses numbers and enums given as strings', () => {
    const config = loadConfig({
      ...minimal,
      PORT: '8080',
      BACKUP_COMPRESSION: 'gzip',
      BACKUP_FORMAT: 'plain',
      BACKUP_CONCURRENCY: '4',
    });
    expect(config.PORT).toBe(8080);
    expect(config.BACKUP_COMPRESSION).toBe('gzip');
    expect(config.BACKUP_FORMAT).toBe('plain');
    expect(config.BACKUP_CONCURRENCY).toBe(4);
  });

  it('accepts a public key instead of a shared secret', () => {
    const config = loadConfig({
      DATABASE_URL: minimal.DATABASE_URL,
      JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----',
    });
    expect(config.JWT_SECRET).toBeUndefined();
    expect(config.JWT_PUBLIC_KEY).toContain('BEGIN PUBLIC KEY');
  });

  it('treats empty and blank strings as unset', () => {
    const config = loadConfig({ ...minimal, PORT: '', BACKUP_DIR: '   ', QUEUE_PREFIX: '' });
    expect(config.PORT).toBe(5000);
    expect(config.BACKUP_DIR).toBe('backups');
    expect(config.QUEUE_PREFIX).toBe('pgkeep');
    // A required key given as an empty string is missing, not valid.
    expect(configError({ ...minimal, DATABASE_URL: '' }).message).toContain('DATABASE_URL');
    // An empty secret does not satisfy the "secret or public key" rule.
    expect(configError({ ...minimal, JWT_SECRET: '' }).message).toContain('JWT_SECRET');
  });

  it('does not read process.env', () => {
    const before = process.env.PORT;
    process.env.PORT = '6123';
    try {
      expect(loadConfig(minimal).PORT).toBe(5000);
    } finally {
      if (before === undefined) delete process.env.PORT;
      else process.env.PORT = before;
    }
  });

  it.each([
    ['PORT', 'abc'],
    ['PORT', '70000'],
    ['PORT', '-1'],
    ['PORT', '80.5'],
    ['DATABASE_URL', 'mysql://x'],
    ['DATABASE_URL', 'not a url'],
    ['REDIS_URL', 'nonsense'],
    ['REDIS_URL', 'http://127.0.0.1:6379'],
    ['BACKUP_COMPRESSION', 'lz4'],
    ['BACKUP_FORMAT', 'tar'],
    ['QUEUE_PREFIX', 'has space'],
    ['QUEUE_PREFIX', 'a:b'],
    ['LOCK_NAMESPACE', 'x'.repeat(65)],
    ['BACKUP_ZSTD_LEVEL', '20'],
    ['LOG_LEVEL', 'loud'],
    ['LOG_FORMAT', 'yaml'],
    ['JWT_SECRET', 'too-short'],
    ['LOCK_DATABASE_URL', 'mysql://x'],
    ['DESTRUCTIVE_CONCURRENCY', '0'],
    ['DESTRUCTIVE_CONCURRENCY', '65'],
    ['DISCOVERY_CACHE_MS', '-1'],
    ['DISCOVERY_CACHE_MS', '600001'],
    ['JWT_REQUIRE_EXP', 'maybe'],
    ['JWT_MAX_LIFETIME_SECONDS', '0'],
    ['AUTH_FAILURE_LIMIT', '-1'],
    ['AUTH_FAILURE_WINDOW_MS', '10'],
    ['HEALTH_CACHE_MS', '-5'],
  ])('rejects %s=%s with a ConfigError naming the key', (key, value) => {
    const error = configError({ ...minimal, [key]: value });
    expect(error.message).toMatch(new RegExp(`^\\s*- ${key}:`, 'm'));
    expect(error.issues.some((issue) => issue.startsWith(`${key}:`))).toBe(true);
  });

  it('requires DATABASE_URL or TARGETS_FILE', () => {
    const error = configError({ JWT_SECRET: secret });
    expect(error.issues).toEqual([
      'DATABASE_URL: set DATABASE_URL (one database) or TARGETS_FILE (many)',
    ]);
    // Reported along with any other bad key.
    expect(configError({ JWT_SECRET: secret, PORT: 'abc' }).issues).toHaveLength(2);
  });

  it('accepts TARGETS_FILE without DATABASE_URL', () => {
    const config = loadConfig({ JWT_SECRET: secret, TARGETS_FILE: '/etc/pgkeep/targets.yaml' });
    expect(config.DATABASE_URL).toBeUndefined();
    expect(config.TARGETS_FILE).toBe('/etc/pgkeep/targets.yaml');
  });

  it('has the documented defaults for the keys of many targets', () => {
    const config = loadConfig(minimal);
    expect(config.TARGETS_FILE).toBeUndefined();
    expect(config.LOCK_DATABASE_URL).toBeUndefined();
    expect(config.DESTRUCTIVE_CONCURRENCY).toBe(1);
    expect(config.DISCOVERY_CACHE_MS).toBe(5000);
    const set = loadConfig({
      ...minimal,
      LOCK_DATABASE_URL: 'postgresql://locks.example/pgkeep',
      DESTRUCTIVE_CONCURRENCY: '64',
      DISCOVERY_CACHE_MS: '0',
    });
    expect(set.LOCK_DATABASE_URL).toBe('postgresql://locks.example/pgkeep');
    expect(set.DESTRUCTIVE_CONCURRENCY).toBe(64);
    expect(set.DISCOVERY_CACHE_MS).toBe(0);
  });

  it('requires JWT_SECRET or JWT_PUBLIC_KEY', () => {
    const error = configError({ DATABASE_URL: minimal.DATABASE_URL });
    expect(error.message).toContain('JWT_SECRET');
    expect(error.message).toContain('JWT_PUBLIC_KEY');
  });

  it('reports every bad key at once', () => {
    const error = configError({ ...minimal, PORT: 'abc', BACKUP_COMPRESSION: 'lz4' });
    expect(error.issues).toHaveLength(2);
    expect(error.message).toContain('PORT');
    expect(error.message).toContain('BACKUP_COMPRESSION');
  });

  it('never puts a secret value into the error message', () => {
    const password = 'Sup3rS3cretPassw0rd';
    const badUrl = configError({ ...minimal, DATABASE_URL: `mysql://admin:${password}@db/app` });
    expect(badUrl.message).toContain('DATABASE_URL');
    expect(badUrl.message).not.toContain(password);
    expect(badUrl.issues.join('\n')).not.toContain(password);

    const shortSecret = 'tiny-secret-xyz';
    const badSecret = configError({ ...minimal, JWT_SECRET: shortSecret });
    expect(badSecret.message).toContain('JWT_SECRET');
    expect(badSecret.message).not.toContain(shortSecret);

    const redisPassword = 'R3disPassw0rdValue';
    const badRedis = configError({ ...minimal, REDIS_URL: `http://:${redisPassword}@cache:6379` });
    expect(badRedis.message).toContain('REDIS_URL');
    expect(badRedis.message).not.toContain(redisPassword);

    // Another key is bad: the valid secrets must not appear either.
    const other = configError({ ...minimal, PORT: 'abc' });
    expect(other.message).not.toContain(secret);
    expect(other.message).not.toContain('pw@');
  });
});

describe('settings of the load into a temporary database', () => {
  it('defaults to 256MB of maintenance_work_mem and no parallel maintenance workers', () => {
    const config = loadConfig(minimal);
    expect(config.RESTORE_MAINTENANCE_WORK_MEM).toBe('256MB');
    expect(config.RESTORE_PARALLEL_MAINTENANCE_WORKERS).toBe(0);
  });

  it('takes a size with a unit PostgreSQL reads, and a worker count', () => {
    for (const size of ['1MB', '1024kB', '512MB', '2GB', '1TB']) {
      expect(loadConfig({ ...minimal, RESTORE_MAINTENANCE_WORK_MEM: size })).toMatchObject({
        RESTORE_MAINTENANCE_WORK_MEM: size,
      });
    }
    expect(
      loadConfig({ ...minimal, RESTORE_PARALLEL_MAINTENANCE_WORKERS: '4' })
        .RESTORE_PARALLEL_MAINTENANCE_WORKERS,
    ).toBe(4);
  });

  it.each([
    ['no unit', '262144'],
    ['a unit PostgreSQL does not spell so', '256mb'],
    ['a space', '256 MB'],
    ['an option smuggled in', '256MB -c fsync=off'],
    ['less than 1MB', '1023kB'],
    ['more than PostgreSQL takes', '2048GB'],
    ['a fraction', '0.5GB'],
  ])('refuses RESTORE_MAINTENANCE_WORK_MEM with %s', (_, value) => {
    expect(configError({ ...minimal, RESTORE_MAINTENANCE_WORK_MEM: value }).message).toContain(
      'RESTORE_MAINTENANCE_WORK_MEM',
    );
  });

  it('refuses a negative or fractional worker count', () => {
    for (const value of ['-1', '1.5', 'two']) {
      expect(
        configError({ ...minimal, RESTORE_PARALLEL_MAINTENANCE_WORKERS: value }).message,
      ).toContain('RESTORE_PARALLEL_MAINTENANCE_WORKERS');
    }
  });
});

describe('metrics and health settings', () => {
  it('keeps /metrics closed by default and checks backups within a day and 1 GiB free', () => {
    const config = loadConfig(minimal);
    expect(config.METRICS_PUBLIC).toBe(false);
    expect(config.METRICS_TOKEN).toBeUndefined();
    expect(config.HEALTH_MAX_BACKUP_AGE_HOURS).toBe(24);
    expect(config.HEALTH_MIN_FREE_BYTES).toBe(1024 ** 3);
  });

  it('takes a fraction of an hour, and refuses a short metrics token without echoing it', () => {
    const config = loadConfig({
      ...minimal,
      HEALTH_MAX_BACKUP_AGE_HOURS: '0.5',
      HEALTH_MIN_FREE_BYTES: '0',
      METRICS_PUBLIC: 'true',
    });
    expect(config.HEALTH_MAX_BACKUP_AGE_HOURS).toBe(0.5);
    expect(config.HEALTH_MIN_FREE_BYTES).toBe(0);
    expect(config.METRICS_PUBLIC).toBe(true);
    const error = configError({
      ...minimal,
      METRICS_TOKEN: 'short-token',
      HEALTH_MAX_BACKUP_AGE_HOURS: '0',
    });
    expect(error.message).toContain('METRICS_TOKEN');
    expect(error.message).toContain('HEALTH_MAX_BACKUP_AGE_HOURS');
    expect(error.message).not.toContain('short-token');
  });
});
