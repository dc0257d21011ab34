import {
  type Config,
  discoverySchedulerId,
  jobCatalog,
  type PitrScheduleName,
  pitrScheduleJobs,
  pitrSchedulerId,
  type ScheduleName,
  type ServerSettings,
  scheduleJobs,
  scheduleNames,
  schedulerId,
  type TargetSettings,
} from '@pgkeep/core';
import type { PgkeepQueues } from './queues.js';
import { jobOptions } from './queues.js';
import { configSchedules, type ScheduleSettings, scheduleTemplate } from './schedules.js';

export interface AppliedTargetSchedule {
  target: string;
  name: ScheduleName;
  schedulerId: string;
  settings: ScheduleSettings;
}

/** Scheduler ids of a target that is not `default`: `schedule-<name>.<t>` or `discover-<name>.<t>`. */
const targetSchedulerPattern = /^(schedule|discover)-(backup|cleanup|verify)\.([a-z0-9_-]{1,63})$/;

/**
 * The schedules of every target but `default` (whose schedules keep their runtime changes, see
 * applySchedules), from the targets file alone. Idempotent: any number of workers doing it at
 * once, or again after a reload, leave one scheduler per (target, schedule); a scheduler whose
 * target is gone or whose schedule is off is removed. The removed target's backups stay.
 */
export async function applyTargetSchedules(
  queues: PgkeepQueues,
  config: Config,
  targets: TargetSettings[],
): Promise<{ applied: AppliedTargetSchedule[]; removed: string[] }> {
  const wanted = new Map<string, { queue: keyof PgkeepQueues; apply: () => Promise<unknown> }>();
  const applied: AppliedTargetSchedule[] = [];
  for (const target of targets) {
    if (target.name === 'default') continue;
    const settings = configSchedules(config, target);
    for (const name of scheduleNames) {
      const schedule = settings[name];
      if (!schedule.enabled) continue;
      const template = scheduleTemplate(name, config, target);
      const discovery = target.database === null;
      const id = discovery
        ? discoverySchedulerId(name, target.name)
        : schedulerId(name, target.name);
      // A discovery target's run is a `discover` job (on the backups queue) that queues the
      // scheduled job for each database it finds.
      const jobName = discovery ? 'discover' : scheduleJobs[name];
      const data = discovery
        ? {
            job: scheduleJobs[name],
            template: template.data,
            targetName: target.name,
            requestedBy: 'scheduler',
          }
        : template.data;
      const queue = jobCatalog[jobName].queue;
      wanted.set(id, {
        queue,
        apply: () =>
          queues[queue].upsertJobScheduler(
            id,
            { pattern: schedule.pattern, tz: schedule.timeZone },
            { name: jobName, data, opts: template.opts },
          ),
      });
      applied.push({ target: target.name, name, schedulerId: id, settings: schedule });
    }
  }
  for (const { apply } of wanted.values()) await apply();
  const removed: string[] = [];
  for (const [queueName, queue] of Object.entries(queues) as [
    keyof PgkeepQueues,
    PgkeepQueues[keyof PgkeepQueues],
  ][]) {
    const schedulers = await queue.getJobSchedulers(0, -1);
    for (const scheduler of schedulers) {
      const id = scheduler.key;
      if (!targetSchedulerPattern.test(id)) continue;
      if (wanted.get(id)?.queue === queueName) continue;
      await queue.removeJobScheduler(id);
      removed.push(id);
    }
  }
  return { applied, removed };
}

export interface AppliedPitrSchedule {
  server: string;
  name: PitrScheduleName;
  schedulerId: string;
  pattern: string;
  timeZone: string;
}

const pitrSchedulerPattern = /^pitr-(basebackup|cleanup)\.([a-z0-9_-]{1,63})$/;

/**
 * The base backup and archive clean-up schedules of every server with PITR on, by server
 * (`pitr-basebackup.<server>`, `pitr-cleanup.<server>`); idempotent as applyTargetSchedules, and
 * removes the schedules of servers whose PITR is off or gone. `targetOf` names the target a
 * server's scheduled jobs are logged under (the first target on it).
 */
export async function applyPitrSchedules(
  queues: PgkeepQueues,
  config: Config,
  servers: ServerSettings[],
  targetOf: (server: string) => string,
): Promise<{ applied: AppliedPitrSchedule[]; removed: string[] }> {
  const applied: AppliedPitrSchedule[] = [];
  const wanted = new Set<string>();
  for (const server of servers) {
    const pitr = server.pitr;
    if (!pitr) continue;
    const common = {
      server: server.name,
      targetName: targetOf(server.name),
      requestedBy: 'scheduler',
    };
    const plans = [
      {
        name: 'basebackup' as const,
        schedule: pitr.baseBackup.schedule,
        data: {
          ...common,
          checkpoint: pitr.baseBackup.checkpoint,
          verify: true,
          label: null,
          type: 'scheduled',
        },
      },
      {
        name: 'cleanup' as const,
        schedule: pitr.cleanup.schedule,
        data: { ...common, retention: pitr.retention, timeZone: pitr.timeZone, dryRun: false },
      },
    ];
    for (const plan of plans) {
      if (!plan.schedule.enabled) continue;
      const id = pitrSchedulerId(plan.name, server.name);
      const jobName = pitrScheduleJobs[plan.name];
      const { removeOnComplete, removeOnFail, attempts, backoff } = jobOptions(jobName, config);
      await queues[jobCatalog[jobName].queue].upsertJobScheduler(
        id,
        { pattern: plan.schedule.pattern, tz: pitr.timeZone },
        {
          name: jobName,
          data: plan.data,
          opts: { removeOnComplete, removeOnFail, attempts, backoff },
        },
      );
      wanted.add(id);
      applied.push({
        server: server.name,
        name: plan.name,
        schedulerId: id,
        pattern: plan.schedule.pattern,
        timeZone: pitr.timeZone,
      });
    }
  }
  const removed: string[] = [];
  for (const queue of Object.values(queues)) {
    for (const scheduler of await queue.getJobSchedulers(0, -1)) {
      if (!pitrSchedulerPattern.test(scheduler.key) || wanted.has(scheduler.key)) continue;
      await queue.removeJobScheduler(scheduler.key);
      removed.push(scheduler.key);
    }
  }
  return { applied, removed };
}
