import type { Config } from './config.js';
import type { Retention, ScheduleName } from './job-catalog.js';
import type { ScheduleSpec, TargetSettings } from './targets.js';

/**
 * The environment's settings of a target: all of the target `default` (DATABASE_URL alone),
 * and what a target in a targets file gets for every key it leaves out. One place, so the
 * scheduler, the API and the targets file cannot read the same keys two ways.
 */

/** The pattern an `off` schedule keeps, to be turned back on with, when the env has none. */
const offPatterns = { cleanup: '0 3 * * 0', verify: '0 4 * * *' } as const;

export function retentionFromConfig(config: Config): Retention {
  return config.BACKUP_RETENTION === 'gfs'
    ? {
        kind: 'gfs',
        days: config.BACKUP_GFS_DAYS,
        weeks: config.BACKUP_GFS_WEEKS,
        months: config.BACKUP_GFS_MONTHS,
        years: config.BACKUP_GFS_YEARS,
      }
    : { kind: 'keep-last', keepLast: config.BACKUP_KEEP_LAST };
}

/** A schedule's pattern or `off`: `off` keeps `fallback`, to be turned back on with. */
export function scheduleSpecOf(value: string, fallback: string): ScheduleSpec {
  return value === 'off'
    ? { pattern: fallback, enabled: false }
    : { pattern: value, enabled: true };
}

/** Each schedule as the environment has it (`off` keeps a pattern to turn back on with). */
export function scheduleSpecsFromConfig(config: Config): Record<ScheduleName, ScheduleSpec> {
  return {
    backup: { pattern: config.BACKUP_SCHEDULE, enabled: config.AUTO_BACKUP_ENABLED },
    cleanup: scheduleSpecOf(config.BACKUP_CLEANUP_SCHEDULE, offPatterns.cleanup),
    verify: scheduleSpecOf(config.VERIFY_SCHEDULE, offPatterns.verify),
  };
}

export function encryptionConfigured(config: Config): boolean {
  return Boolean(config.BACKUP_ENCRYPTION_KEY || config.BACKUP_ENCRYPTION_PASSPHRASE);
}

export type TargetDefaults = Omit<TargetSettings, 'name' | 'server' | 'database'>;

/** Every setting of a target that the environment decides, for one whole database. */
export function targetDefaultsFromConfig(config: Config): TargetDefaults {
  return {
    include: [],
    exclude: [],
    schedules: scheduleSpecsFromConfig(config),
    timeZone: config.BACKUP_TIMEZONE,
    retention: retentionFromConfig(config),
    destinations: [...config.BACKUP_DESTINATIONS],
    encryption: encryptionConfigured(config),
    restoreEnabled: config.RESTORE_ENABLED,
    format: config.BACKUP_FORMAT,
    dumpJobs: config.BACKUP_DUMP_JOBS ?? null,
    compression: config.BACKUP_COMPRESSION,
    verifyRestore: config.VERIFY_RESTORE,
    tables: { include: null, exclude: [] },
  };
}
