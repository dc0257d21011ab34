import {
  AppError,
  type Config,
  jobCatalog,
  retentionFromConfig,
  type ScheduleName,
  scheduleJobs,
  scheduleNames,
  schedulerId,
  scheduleSpecsFromConfig,
  type TargetSettings,
} from '@pgkeep/core';
import type { JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { PgkeepQueues } from './queues.js';
import { jobOptions } from './queues.js';

/** What decides when a schedule runs. */
export interface ScheduleSettings {
  pattern: string;
  timeZone: string;
  enabled: boolean;
}

/** A change made through the API, with the configuration it was made against. */
export interface ScheduleOverride {
  settings: ScheduleSettings;
  configAtChange: ScheduleSettings;
  updatedBy: string;
  updatedAt: string;
}

// Built in core beside every other setting of a target; exported here too for its callers.
export { retentionFromConfig };

/** Each schedule as the configuration has it (`off` keeps a pattern to turn back on with). */
export function configSchedules(
  config: Config,
  target?: TargetSettings,
): Record<ScheduleName, ScheduleSettings> {
  const specs = target?.schedules ?? scheduleSpecsFromConfig(config);
  const timeZone = target?.timeZone ?? config.BACKUP_TIMEZONE;
  return Object.fromEntries(
    scheduleNames.map((name) => [name, { ...specs[name], timeZone }]),
  ) as Record<ScheduleName, ScheduleSettings>;
}

/**
 * The job each run adds. `requestedAt` is left out: a template is fixed, so the worker takes
 * the run's own time.
 */
export function scheduleTemplate(
  name: ScheduleName,
  config: Config,
  target?: TargetSettings,
): { data: Record<string, unknown>; opts: JobsOptions } {
  const requestedBy = 'scheduler';
  // A target's own settings; without one, the environment's (the target `default`).
  const targetName = target ? { targetName: target.name } : {};
  const format = target?.format ?? config.BACKUP_FORMAT;
  const dumpJobs = target ? target.dumpJobs : (config.BACKUP_DUMP_JOBS ?? null);
  const data: Record<ScheduleName, Record<string, unknown>> = {
    backup: {
      tables: target?.tables.include ?? null,
      format,
      // Only when set: a template without it stays the same as before directory dumps existed.
      ...(format === 'directory' && dumpJobs !== null ? { jobs: dumpJobs } : {}),
      compression: target?.compression ?? config.BACKUP_COMPRESSION,
      label: null,
      type: 'scheduled',
      ...(target && target.tables.exclude.length > 0
        ? { excludeTables: target.tables.exclude }
        : {}),
      ...targetName,
      requestedBy,
    },
    cleanup: {
      retention: target?.retention ?? retentionFromConfig(config),
      timeZone: target?.timeZone ?? config.BACKUP_TIMEZONE,
      dryRun: false,
      preRestoreMaxAgeDays: config.PRE_RESTORE_MAX_AGE_DAYS,
      ...targetName,
      requestedBy,
    },
    verify: {
      backupId: 'latest',
      restore: target?.verifyRestore ?? config.VERIFY_RESTORE,
      ...targetName,
      requestedBy,
    },
  };
  const { removeOnComplete, removeOnFail, attempts, backoff } = jobOptions(
    scheduleJobs[name],
    config,
  );
  return { data: data[name], opts: { removeOnComplete, removeOnFail, attempts, backoff } };
}

const overridesKey = (prefix: string) => `${prefix}:pgkeep-schedules`;

function sameSettings(a: ScheduleSettings, b: ScheduleSettings): boolean {
  return a.pattern === b.pattern && a.timeZone === b.timeZone && a.enabled === b.enabled;
}

export async function readOverrides(
  redis: Redis,
  prefix: string,
): Promise<Partial<Record<ScheduleName, ScheduleOverride>>> {
  const raw = await redis.hgetall(overridesKey(prefix));
  const overrides: Partial<Record<ScheduleName, ScheduleOverride>> = {};
  for (const name of scheduleNames) {
    const value = raw[name];
    if (!value) continue;
    try {
      overrides[name] = JSON.parse(value) as ScheduleOverride;
    } catch {
      // unreadable: the configuration applies
    }
  }
  return overrides;
}

/**
 * The rule between a runtime change and the configuration: a change made through the API
 * holds across restarts for as long as the configuration of that schedule stays what it was
 * when the change was made. Once the configuration changes, the configuration wins and the
 * runtime change is dropped.
 */
export function effectiveSettings(
  fromConfig: ScheduleSettings,
  override: ScheduleOverride | undefined,
): { settings: ScheduleSettings; source: 'config' | 'runtime'; staleOverride: boolean } {
  if (!override) return { settings: fromConfig, source: 'config', staleOverride: false };
  if (sameSettings(override.configAtChange, fromConfig)) {
    return { settings: override.settings, source: 'runtime', staleOverride: false };
  }
  return { settings: fromConfig, source: 'config', staleOverride: true };
}

type Template = ReturnType<typeof scheduleTemplate>;

/**
 * What the workers' configuration says of each schedule, published by every worker at start:
 * the API shows and changes schedules against the workers' configuration, not its own.
 */
const workerViewKey = (prefix: string) => `${prefix}:pgkeep-schedule-config`;

interface WorkerScheduleView {
  config: ScheduleSettings;
  template: Template;
}

async function readWorkerView(
  redis: Redis,
  config: Config,
): Promise<Record<ScheduleName, WorkerScheduleView>> {
  const raw = await redis.hgetall(workerViewKey(config.REDIS_PREFIX));
  const own = configSchedules(config);
  const views = {} as Record<ScheduleName, WorkerScheduleView>;
  for (const name of scheduleNames) {
    let stored: WorkerScheduleView | undefined;
    try {
      stored = raw[name] ? (JSON.parse(raw[name]) as WorkerScheduleView) : undefined;
    } catch {
      stored = undefined;
    }
    // No worker has started yet: this process's configuration is the best guess.
    views[name] = stored ?? { config: own[name], template: scheduleTemplate(name, config) };
  }
  return views;
}

async function applyToQueue(
  queues: PgkeepQueues,
  template: Template,
  name: ScheduleName,
  settings: ScheduleSettings,
) {
  const jobName = scheduleJobs[name];
  const queue = queues[jobCatalog[jobName].queue];
  if (!settings.enabled) {
    await queue.removeJobScheduler(schedulerId(name));
    return;
  }
  // Upsert by a fixed id: any number of workers doing this at once leave one scheduler.
  await queue.upsertJobScheduler(
    schedulerId(name),
    { pattern: settings.pattern, tz: settings.timeZone },
    { name: jobName, data: template.data, opts: template.opts },
  );
}

export interface AppliedSchedule {
  name: ScheduleName;
  settings: ScheduleSettings;
  source: 'config' | 'runtime';
}

/**
 * At worker start: every schedule of the target `default` as config and runtime changes
 * together say (`target`: the default target's settings from a targets file, if it has one).
 */
export async function applySchedules(
  queues: PgkeepQueues,
  redis: Redis,
  config: Config,
  target?: TargetSettings,
): Promise<{ applied: AppliedSchedule[]; droppedOverrides: ScheduleName[] }> {
  const fromConfig = configSchedules(config, target);
  const overrides = await readOverrides(redis, config.REDIS_PREFIX);
  const applied: AppliedSchedule[] = [];
  const droppedOverrides: ScheduleName[] = [];
  for (const name of scheduleNames) {
    const effective = effectiveSettings(fromConfig[name], overrides[name]);
    if (effective.staleOverride) {
      await redis.hdel(overridesKey(config.REDIS_PREFIX), name);
      droppedOverrides.push(name);
    }
    const template = scheduleTemplate(name, config, target);
    const view: WorkerScheduleView = { config: fromConfig[name], template };
    await redis.hset(workerViewKey(config.REDIS_PREFIX), name, JSON.stringify(view));
    await applyToQueue(queues, template, name, effective.settings);
    applied.push({ name, settings: effective.settings, source: effective.source });
  }
  return { applied, droppedOverrides };
}

export interface ScheduleView extends ScheduleSettings {
  name: ScheduleName;
  job: string;
  source: 'config' | 'runtime';
  nextRunAt: string | null;
  updatedBy: string | null;
  updatedAt: string | null;
}

export async function listSchedules(
  queues: PgkeepQueues,
  redis: Redis,
  config: Config,
): Promise<ScheduleView[]> {
  const views: ScheduleView[] = [];
  try {
    const workerView = await readWorkerView(redis, config);
    const overrides = await readOverrides(redis, config.REDIS_PREFIX);
    for (const name of scheduleNames) {
      const override = overrides[name];
      const effective = effectiveSettings(workerView[name].config, override);
      const jobName = scheduleJobs[name];
      const scheduler = await queues[jobCatalog[jobName].queue].getJobScheduler(schedulerId(name));
      views.push({
        name,
        job: jobName,
        ...effective.settings,
        enabled: effective.settings.enabled && scheduler !== undefined,
        source: effective.source,
        nextRunAt: scheduler?.next ? new Date(scheduler.next).toISOString() : null,
        updatedBy: effective.source === 'runtime' ? (override?.updatedBy ?? null) : null,
        updatedAt: effective.source === 'runtime' ? (override?.updatedAt ?? null) : null,
      });
    }
  } catch (error) {
    throw new AppError('QUEUE_UNAVAILABLE', 'the job queue is not reachable', { cause: error });
  }
  return views;
}

/** A runtime change through the API: stored with the configuration it was made against, applied now. */
export async function changeSchedule(
  queues: PgkeepQueues,
  redis: Redis,
  config: Config,
  name: ScheduleName,
  change: Partial<ScheduleSettings>,
  updatedBy: string,
): Promise<ScheduleView> {
  try {
    const { config: fromConfig, template } = (await readWorkerView(redis, config))[name];
    const current = effectiveSettings(
      fromConfig,
      (await readOverrides(redis, config.REDIS_PREFIX))[name],
    ).settings;
    const settings: ScheduleSettings = {
      pattern: change.pattern ?? current.pattern,
      timeZone: change.timeZone ?? current.timeZone,
      enabled: change.enabled ?? current.enabled,
    };
    const override: ScheduleOverride = {
      settings,
      configAtChange: fromConfig,
      updatedBy,
      updatedAt: new Date().toISOString(),
    };
    await applyToQueue(queues, template, name, settings);
    await redis.hset(overridesKey(config.REDIS_PREFIX), name, JSON.stringify(override));
  } catch (error) {
    if (error instanceof AppError) throw error;
    throw new AppError('QUEUE_UNAVAILABLE', 'the job queue is not reachable', { cause: error });
  }
  const view = (await listSchedules(queues, redis, config)).find(
    (schedule) => schedule.name === name,
  );
  if (!view) throw new AppError('INTERNAL_ERROR', `schedule ${name} vanished`);
  return view;
}
