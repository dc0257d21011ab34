import { isValidCron, jobCatalog, loadConfig, scheduleJobs, scheduleNames } from '@pgkeep/core';
import { describe, expect, it } from 'vitest';
import {
  configSchedules,
  effectiveSettings,
  retentionFromConfig,
  type ScheduleOverride,
  type ScheduleSettings,
  scheduleTemplate,
} from './schedules.js';

const minimal = {
  DATABASE_URL: 'postgres://pgkeep:pw@db.example:5432/app',
  JWT_SECRET: 'a-very-long-hs256-secret-of-40-characters!',
};
const config = (env: Record<string, string> = {}) => loadConfig({ ...minimal, ...env });

describe('configSchedules', () => {
  it('gives the documented schedules for a minimal configuration', () => {
    const schedules = configSchedules(config());
    expect(schedules.backup).toEqual({ pattern: '0 2 * * *', timeZone: 'UTC', enabled: true });
    expect(schedules.cleanup).toEqual({ pattern: '0 3 * * 0', timeZone: 'UTC', enabled: true });
    // VERIFY_SCHEDULE is off by default.
    expect(schedules.verify.enabled).toBe(false);
    expect(schedules.verify.timeZone).toBe('UTC');
    expect(isValidCron(schedules.verify.pattern)).toBe(true);
    expect(Object.keys(schedules).sort()).toEqual([...scheduleNames].sort());
  });

  it('takes the patterns and the time zone from the configuration', () => {
    const schedules = configSchedules(
      config({
        BACKUP_SCHEDULE: '30 1 * * *',
        BACKUP_CLEANUP_SCHEDULE: '15 4 * * 1',
        VERIFY_SCHEDULE: '0 0 5 * * *',
        BACKUP_TIMEZONE: 'Europe/Lisbon',
      }),
    );
    expect(schedules).toEqual({
      backup: { pattern: '30 1 * * *', timeZone: 'Europe/Lisbon', enabled: true },
      cleanup: { pattern: '15 4 * * 1', timeZone: 'Europe/Lisbon', enabled: true },
      verify: { pattern: '0 0 5 * * *', timeZone: 'Europe/Lisbon', enabled: true },
    });
  });

  it('turns off a schedule set to "off", keeping a valid pattern to turn it back on with', () => {
    const schedules = configSchedules(
      config({ BACKUP_CLEANUP_SCHEDULE: 'off', VERIFY_SCHEDULE: 'off' }),
    );
    for (const name of ['cleanup', 'verify'] as const) {
      expect(schedules[name].enabled).toBe(false);
      expect(schedules[name].pattern).not.toBe('off');
      expect(isValidCron(schedules[name].pattern)).toBe(true);
    }
    expect(schedules.backup.enabled).toBe(true);
  });

  it('turns off the backup schedule when AUTO_BACKUP_ENABLED is false, keeping its pattern', () => {
    const schedules = configSchedules(
      config({ AUTO_BACKUP_ENABLED: 'false', BACKUP_SCHEDULE: '45 23 * * *' }),
    );
    expect(schedules.backup).toEqual({ pattern: '45 23 * * *', timeZone: 'UTC', enabled: false });
    expect(schedules.cleanup.enabled).toBe(true);
  });
});

describe('effectiveSettings', () => {
  const fromConfig: ScheduleSettings = { pattern: '0 2 * * *', timeZone: 'UTC', enabled: true };
  const changed: ScheduleSettings = {
    pattern: '0 5 * * *',
    timeZone: 'Europe/Lisbon',
    enabled: false,
  };
  const override = (configAtChange: ScheduleSettings): ScheduleOverride => ({
    settings: changed,
    configAtChange,
    updatedBy: 'admin-1',
    updatedAt: '2026-03-01T10:00:00.000Z',
  });

  it('uses the configuration when there is no runtime change', () => {
    expect(effectiveSettings(fromConfig, undefined)).toEqual({
      settings: fromConfig,
      source: 'config',
      staleOverride: false,
    });
  });

  it('lets a runtime change win while the configuration is what it was at the change', () => {
    // An equal copy, as read back from Redis, not the same object.
    const result = effectiveSettings(fromConfig, override({ ...fromConfig }));
    expect(result).toEqual({ settings: changed, source: 'runtime', staleOverride: false });
  });

  it.each([
    ['pattern', { ...fromConfig, pattern: '0 1 * * *' }],
    ['time zone', { ...fromConfig, timeZone: 'Asia/Tokyo' }],
    ['enabled flag', { ...fromConfig, enabled: false }],
  ])('lets the configuration win once its %s has changed since', (_what, configAtChange) => {
    const result = effectiveSettings(fromConfig, override(configAtChange));
    expect(result).toEqual({ settings: fromConfig, source: 'config', staleOverride: true });
  });
});

describe('retentionFromConfig', () => {
  it('is keep-last with BACKUP_KEEP_LAST by default', () => {
    expect(retentionFromConfig(config())).toEqual({ kind: 'keep-last', keepLast: 30 });
    expect(retentionFromConfig(config({ BACKUP_KEEP_LAST: '12' }))).toEqual({
      kind: 'keep-last',
      keepLast: 12,
    });
  });

  it('is gfs with the BACKUP_GFS_* values when BACKUP_RETENTION is gfs', () => {
    expect(retentionFromConfig(config({ BACKUP_RETENTION: 'gfs' }))).toEqual({
      kind: 'gfs',
      days: 7,
      weeks: 4,
      months: 12,
      years: 5,
    });
    expect(
      retentionFromConfig(
        config({
          BACKUP_RETENTION: 'gfs',
          BACKUP_GFS_DAYS: '14',
          BACKUP_GFS_WEEKS: '0',
          BACKUP_GFS_MONTHS: '6',
          BACKUP_GFS_YEARS: '2',
          BACKUP_KEEP_LAST: '3',
        }),
      ),
    ).toEqual({ kind: 'gfs', days: 14, weeks: 0, months: 6, years: 2 });
  });
});

describe('scheduleTemplate', () => {
  const requestedAt = '2026-03-01T02:00:00.000Z';

  it('adds a scheduled backup asked for by the scheduler, without a fixed requestedAt', () => {
    const cfg = config({ BACKUP_FORMAT: 'plain', BACKUP_COMPRESSION: 'gzip' });
    const { data } = scheduleTemplate('backup', cfg);
    expect(data).toMatchObject({
      type: 'scheduled',
      requestedBy: 'scheduler',
      tables: null,
      format: 'plain',
      compression: 'gzip',
    });
    expect(data).not.toHaveProperty('requestedAt');
  });

  it('retries a scheduled backup as often as BACKUP_ATTEMPTS says', () => {
    const { opts } = scheduleTemplate('backup', config({ BACKUP_ATTEMPTS: '5' }));
    expect(opts.attempts).toBe(5);
  });

  it('carries the keep-last retention, time zone and pre-restore age into the clean-up', () => {
    const cfg = config({
      BACKUP_KEEP_LAST: '9',
      PRE_RESTORE_MAX_AGE_DAYS: '3',
      BACKUP_TIMEZONE: 'Europe/Lisbon',
    });
    const { data } = scheduleTemplate('cleanup', cfg);
    expect(data).toMatchObject({
      retention: { kind: 'keep-last', keepLast: 9 },
      timeZone: 'Europe/Lisbon',
      preRestoreMaxAgeDays: 3,
      requestedBy: 'scheduler',
      dryRun: false,
    });
    expect(data).not.toHaveProperty('requestedAt');
  });

  it('carries a gfs retention with the BACKUP_GFS_* values into the clean-up', () => {
    const cfg = config({
      BACKUP_RETENTION: 'gfs',
      BACKUP_GFS_DAYS: '10',
      BACKUP_GFS_WEEKS: '8',
      BACKUP_GFS_MONTHS: '0',
      BACKUP_GFS_YEARS: '3',
    });
    const { data } = scheduleTemplate('cleanup', cfg);
    expect(data.retention).toEqual({ kind: 'gfs', days: 10, weeks: 8, months: 0, years: 3 });
    expect(data.preRestoreMaxAgeDays).toBe(7);
  });

  it('verifies the latest backup, restoring it when VERIFY_RESTORE says so', () => {
    const plain = scheduleTemplate('verify', config()).data;
    expect(plain).toMatchObject({ backupId: 'latest', restore: false, requestedBy: 'scheduler' });
    expect(plain).not.toHaveProperty('requestedAt');
    const withRestore = scheduleTemplate('verify', config({ VERIFY_RESTORE: 'true' })).data;
    expect(withRestore.restore).toBe(true);
  });

  it.each([
    ['defaults', {}],
    [
      'gfs, gzip and a scratch restore',
      {
        BACKUP_RETENTION: 'gfs',
        BACKUP_COMPRESSION: 'gzip',
        BACKUP_FORMAT: 'plain',
        VERIFY_RESTORE: 'yes',
        BACKUP_TIMEZONE: 'Asia/Tokyo',
      },
    ],
  ])('makes payloads the job catalog accepts once requestedAt is added (%s)', (_what, env) => {
    const cfg = config(env);
    for (const name of scheduleNames) {
      const { data } = scheduleTemplate(name, cfg);
      const parsed = jobCatalog[scheduleJobs[name]].payload.safeParse({ ...data, requestedAt });
      expect(parsed.error?.issues ?? []).toEqual([]);
      expect(parsed.success).toBe(true);
    }
  });
});
