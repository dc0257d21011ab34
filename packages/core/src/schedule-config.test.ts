import { describe, expect, it } from 'vitest';
import { ConfigError, isValidCron, isValidTimeZone, loadConfig } from './config.js';

const databaseUrl = 'postgres://pgkeep:pw@db.example:5432/app';
const minimal = {
  DATABASE_URL: databaseUrl,
  JWT_SECRET: 'a-very-long-hs256-secret-of-40-characters!',
};

function configError(
  env: Record<string, string | undefined>,
  options?: { requireAuth: boolean },
): ConfigError {
  try {
    loadConfig(env, options);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('loadConfig accepted an invalid environment');
}

describe('schedule settings in loadConfig', () => {
  it('has the documented defaults', () => {
    const config = loadConfig(minimal);
    expect(config.BACKUP_SCHEDULE).toBe('0 2 * * *');
    expect(config.BACKUP_CLEANUP_SCHEDULE).toBe('0 3 * * 0');
    expect(config.BACKUP_KEEP_LAST).toBe(30);
    expect(config.BACKUP_TIMEZONE).toBe('UTC');
    expect(config.VERIFY_SCHEDULE).toBe('off');
    expect(config.PRE_RESTORE_MAX_AGE_DAYS).toBe(7);
    expect(config.AUTO_BACKUP_ENABLED).toBe(true);
  });

  it.each(['*/15 * * * *', '0 2 * * 1-5', '30 0 2 * * *'])(
    'accepts BACKUP_SCHEDULE %j (5 fields, or 6 with seconds first)',
    (pattern) => {
      expect(loadConfig({ ...minimal, BACKUP_SCHEDULE: pattern }).BACKUP_SCHEDULE).toBe(pattern);
    },
  );

  it.each(['not a cron', '* * *', '61 * * * *', '0 0 2 * * * 2026'])(
    'rejects BACKUP_SCHEDULE %j, naming the key',
    (pattern) => {
      const error = configError({ ...minimal, BACKUP_SCHEDULE: pattern });
      expect(error.message).toContain('BACKUP_SCHEDULE');
      expect(error.issues.some((issue) => issue.startsWith('BACKUP_SCHEDULE'))).toBe(true);
    },
  );

  it.each(['BACKUP_CLEANUP_SCHEDULE', 'VERIFY_SCHEDULE'] as const)(
    'accepts "off" and cron patterns for %s, and rejects anything else',
    (key) => {
      expect(loadConfig({ ...minimal, [key]: 'off' })[key]).toBe('off');
      expect(loadConfig({ ...minimal, [key]: '0 4 * * 6' })[key]).toBe('0 4 * * 6');
      expect(loadConfig({ ...minimal, [key]: '0 0 4 * * 6' })[key]).toBe('0 0 4 * * 6');
      expect(configError({ ...minimal, [key]: 'not a cron' }).message).toContain(key);
      expect(configError({ ...minimal, [key]: '61 * * * *' }).message).toContain(key);
    },
  );

  it('accepts an IANA BACKUP_TIMEZONE and rejects an unknown one, naming the key', () => {
    expect(loadConfig({ ...minimal, BACKUP_TIMEZONE: 'Europe/Lisbon' }).BACKUP_TIMEZONE).toBe(
      'Europe/Lisbon',
    );
    const error = configError({ ...minimal, BACKUP_TIMEZONE: 'Mars/Olympus' });
    expect(error.message).toContain('BACKUP_TIMEZONE');
    // Messages name the key and the rule, never the value.
    expect(error.message).not.toContain('Mars/Olympus');
  });

  it.each([
    ['true', true],
    ['false', false],
    ['1', true],
    ['0', false],
    ['yes', true],
    ['no', false],
  ])('reads AUTO_BACKUP_ENABLED=%s as %s', (value, expected) => {
    expect(loadConfig({ ...minimal, AUTO_BACKUP_ENABLED: value }).AUTO_BACKUP_ENABLED).toBe(
      expected,
    );
  });

  it('rejects AUTO_BACKUP_ENABLED=maybe, naming the key', () => {
    expect(configError({ ...minimal, AUTO_BACKUP_ENABLED: 'maybe' }).message).toContain(
      'AUTO_BACKUP_ENABLED',
    );
  });

  const noGfs = {
    BACKUP_GFS_DAYS: '0',
    BACKUP_GFS_WEEKS: '0',
    BACKUP_GFS_MONTHS: '0',
    BACKUP_GFS_YEARS: '0',
  };

  it('refuses a GFS policy that keeps nothing, naming a BACKUP_GFS_* key', () => {
    const error = configError({ ...minimal, BACKUP_RETENTION: 'gfs', ...noGfs });
    expect(error.message).toMatch(/BACKUP_GFS_/);
  });

  it('accepts a GFS policy that keeps something, and all-zero GFS values under keep-last', () => {
    const yearsOnly = loadConfig({
      ...minimal,
      BACKUP_RETENTION: 'gfs',
      ...noGfs,
      BACKUP_GFS_YEARS: '1',
    });
    expect(yearsOnly.BACKUP_RETENTION).toBe('gfs');
    expect(yearsOnly.BACKUP_GFS_YEARS).toBe(1);
    expect(loadConfig({ ...minimal, ...noGfs }).BACKUP_RETENTION).toBe('keep-last');
  });

  it('demands JWT_SECRET by default but not with requireAuth false', () => {
    const env = { DATABASE_URL: databaseUrl };
    expect(configError(env).message).toContain('JWT_SECRET');
    const config = loadConfig(env, { requireAuth: false });
    expect(config.JWT_SECRET).toBeUndefined();
    expect(config.BACKUP_SCHEDULE).toBe('0 2 * * *');
  });

  it('still checks the other keys with requireAuth false', () => {
    const error = configError(
      { DATABASE_URL: databaseUrl, BACKUP_SCHEDULE: '* * *' },
      { requireAuth: false },
    );
    expect(error.message).toContain('BACKUP_SCHEDULE');
    expect(error.message).not.toContain('JWT_SECRET');
  });
});

describe('isValidCron', () => {
  it.each(['0 2 * * *', '*/5 * * * *', '0 3 * * 0', '0 0 2 * * *'])('accepts %j', (pattern) => {
    expect(isValidCron(pattern)).toBe(true);
  });

  it.each([
    '',
    'off',
    'not a cron',
    '* * *',
    '* * * *',
    '61 * * * *',
    '0 25 * * *',
    '0 0 0 1 1 * 2026',
  ])('rejects %j', (pattern) => {
    expect(isValidCron(pattern)).toBe(false);
  });
});

describe('isValidTimeZone', () => {
  it.each(['UTC', 'Europe/Lisbon', 'America/New_York', 'Asia/Tokyo'])('accepts %s', (zone) => {
    expect(isValidTimeZone(zone)).toBe(true);
  });

  it.each(['Mars/Olympus', 'Europe/Atlantis', 'not a zone', ''])('rejects %j', (zone) => {
    expect(isValidTimeZone(zone)).toBe(false);
  });
});
