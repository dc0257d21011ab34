import type { Queue } from 'bullmq';
import { afterAll, describe, expect, it, vi } from 'vitest';
import {
  adminHeaders,
  json,
  postJob,
  startApi,
  type TestApi,
  token,
  waitForJob,
} from './support/api.js';
import { seedPanelSchema } from './support/panel-schema.js';
import { createTestEnv, type TestEnv, urlWithDatabase } from './support/test-env.js';
import { type LogLine, startWorker, WorkerProcess } from './support/worker-process.js';

/**
 * Schedules as an operator meets them: BullMQ job schedulers upserted by every worker at start
 * (never duplicated), runs that are ordinary jobs, the start-up log of what runs when, and
 * runtime changes through the API that hold across restarts until the configuration changes.
 */

interface ScheduleView {
  name: string;
  job: string;
  pattern: string;
  timeZone: string;
  enabled: boolean;
  source: 'config' | 'runtime';
  nextRunAt: string | null;
  updatedBy: string | null;
  updatedAt: string | null;
}

interface Manifest {
  id: string;
  filename: string;
  type: string;
  jobId: string | null;
  requestedBy: string;
}

const envs: TestEnv[] = [];
const apis: TestApi[] = [];
const workers: WorkerProcess[] = [];

afterAll(async () => {
  await Promise.all(workers.map((worker) => worker.stop()));
  await Promise.all(apis.map((api) => api.close()));
  for (const env of envs) await env.cleanup();
});

/** A whole configuration where the backup and clean-up schedules are on, as in production. */
const schedulesOn = {
  AUTO_BACKUP_ENABLED: 'true',
  BACKUP_SCHEDULE: '0 2 * * *',
  BACKUP_CLEANUP_SCHEDULE: '0 3 * * 0',
  BACKUP_TIMEZONE: 'UTC',
};

async function newEnv(label: string, overrides: Record<string, string>): Promise<TestEnv> {
  const env = await createTestEnv(label, overrides);
  envs.push(env);
  return env;
}

async function worker(variables: Record<string, string>): Promise<WorkerProcess> {
  const started = await startWorker(variables);
  workers.push(started);
  return started;
}

/** The API in-process, once its Redis connection and queues are up (it fails fast before). */
async function connectedApi(variables: Record<string, string>): Promise<TestApi> {
  const started = await startApi(variables);
  apis.push(started);
  await vi.waitFor(() => expect(started.services.redis.status).toBe('ready'), {
    timeout: 10_000,
    interval: 20,
  });
  await Promise.all(Object.values(started.services.queues).map((queue) => queue.waitUntilReady()));
  return started;
}

async function schedulerKeys(api: TestApi) {
  const { backups, maintenance } = api.services.queues;
  const keys = async (queue: Queue) =>
    (await queue.getJobSchedulers()).map((scheduler) => scheduler.key).sort();
  return { backups: await keys(backups), maintenance: await keys(maintenance) };
}

/** The runs a scheduler has queued for later: exactly one while it is on. */
async function nextRuns(queue: Queue, id: string): Promise<string[]> {
  return (await queue.getDelayed())
    .map((job) => job.id ?? '')
    .filter((jobId) => jobId.startsWith(`repeat:${id}:`));
}

async function listSchedules(api: TestApi): Promise<ScheduleView[]> {
  const response = await api.app.inject({
    method: 'GET',
    url: '/api/schedules',
    headers: adminHeaders(),
  });
  expect(response.statusCode, response.body).toBe(200);
  const body = json<{ success: boolean; data: ScheduleView[]; count: number }>(response);
  expect(body.count).toBe(body.data.length);
  return body.data;
}

async function scheduleOf(api: TestApi, name: string): Promise<ScheduleView> {
  const found = (await listSchedules(api)).find((schedule) => schedule.name === name);
  if (!found) throw new Error(`schedule ${name} not listed`);
  return found;
}

function putSchedule(
  api: TestApi,
  name: string,
  body: unknown,
  headers: Record<string, string> = adminHeaders(),
) {
  return api.app.inject({
    method: 'PUT',
    url: `/api/schedules/${name}`,
    headers,
    payload: body as object,
  });
}

async function listBackups(api: TestApi): Promise<Manifest[]> {
  const response = await api.app.inject({
    method: 'GET',
    url: '/api/backup',
    headers: adminHeaders(),
  });
  expect(response.statusCode, response.body).toBe(200);
  return json<{ data: Manifest[] }>(response).data;
}

/** The wall-clock hour and weekday of an instant in a time zone. */
function localTime(iso: string, timeZone: string) {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-GB', {
      timeZone,
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
      weekday: 'short',
      hourCycle: 'h23',
    })
      .formatToParts(new Date(iso))
      .map((part) => [part.type, part.value]),
  );
  return `${parts.weekday} ${parts.hour}:${parts.minute}:${parts.second}`;
}

const line = (worker: WorkerProcess, msg: string) =>
  worker.waitForLine((entry) => entry.msg === msg, 10_000);

describe('schedulers at worker start', () => {
  let env: TestEnv;
  let api: TestApi;

  it('restarts and several workers starting at once leave exactly one scheduler of each', async () => {
    env = await newEnv('sched', { ...schedulesOn, BACKUP_KEEP_LAST: '9' });
    api = await connectedApi(env.env);
    const expected = { backups: ['schedule-backup'], maintenance: ['schedule-cleanup'] };

    const first = await worker(env.env);
    await first.stop();
    const second = await worker(env.env);
    expect(await schedulerKeys(api)).toEqual(expected);
    expect(await nextRuns(api.services.queues.backups, 'schedule-backup')).toHaveLength(1);
    expect(await nextRuns(api.services.queues.maintenance, 'schedule-cleanup')).toHaveLength(1);
    await second.stop();

    // A fresh queue prefix: three workers that find no scheduler and all upsert at once.
    const crowd = { ...env.env, QUEUE_PREFIX: `${env.name}_crowd` };
    const crowdApi = await connectedApi(crowd);
    const three = await Promise.all([worker(crowd), worker(crowd), worker(crowd)]);
    expect(await schedulerKeys(crowdApi)).toEqual(expected);
    expect(await nextRuns(crowdApi.services.queues.backups, 'schedule-backup')).toHaveLength(1);
    expect(await nextRuns(crowdApi.services.queues.maintenance, 'schedule-cleanup')).toHaveLength(
      1,
    );
    await Promise.all(three.map((started) => started.stop()));

    // Turned off in the configuration: the next start removes the scheduler and its next run.
    const off = await worker({ ...crowd, AUTO_BACKUP_ENABLED: 'false' });
    expect(await line(off, 'backup schedule off')).toMatchObject({ schedule: 'backup' });
    expect(await schedulerKeys(crowdApi)).toEqual({
      backups: [],
      maintenance: ['schedule-cleanup'],
    });
    expect(await nextRuns(crowdApi.services.queues.backups, 'schedule-backup')).toEqual([]);
    await off.stop();
  });

  it('logs at start what runs when: the crons, the time zone and how many backups are kept', async () => {
    const started = await worker(env.env);
    expect(await line(started, 'scheduler started')).toMatchObject({ timeZone: 'UTC' });
    expect(await line(started, 'backup schedule: backups run at this cron')).toMatchObject({
      schedule: 'backup',
      cron: '0 2 * * *',
      timeZone: 'UTC',
      source: 'config',
    });
    expect(await line(started, 'cleanup schedule: keeps the last 9 backups')).toMatchObject({
      schedule: 'cleanup',
      cron: '0 3 * * 0',
      keepLast: 9,
      retention: { kind: 'keep-last', keepLast: 9 },
    });
    expect(await line(started, 'verify schedule off')).toMatchObject({ schedule: 'verify' });
    await started.stop();
  });

  it('GET /api/schedules lists each schedule with its pattern, time zone, source and next run', async () => {
    const schedules = await listSchedules(api);
    expect(schedules.map((schedule) => schedule.name)).toEqual(['backup', 'cleanup', 'verify']);
    const config = { source: 'config', updatedBy: null, updatedAt: null };
    expect(schedules).toEqual([
      {
        name: 'backup',
        job: 'backup',
        pattern: '0 2 * * *',
        timeZone: 'UTC',
        enabled: true,
        nextRunAt: expect.any(String),
        ...config,
      },
      {
        name: 'cleanup',
        job: 'cleanup',
        pattern: '0 3 * * 0',
        timeZone: 'UTC',
        enabled: true,
        nextRunAt: expect.any(String),
        ...config,
      },
      {
        name: 'verify',
        job: 'verify',
        pattern: expect.any(String),
        timeZone: 'UTC',
        enabled: false,
        nextRunAt: null,
        ...config,
      },
    ]);
    const [backup, cleanup] = schedules as [ScheduleView, ScheduleView];
    for (const next of [backup.nextRunAt, cleanup.nextRunAt]) {
      expect(new Date(next ?? '').toISOString()).toBe(next);
      expect(Date.parse(next ?? '')).toBeGreaterThan(Date.now());
    }
    // The next run is the cron's next time, within a day (backup) or a week (clean-up).
    expect(localTime(backup.nextRunAt ?? '', 'UTC')).toMatch(/ 02:00:00$/);
    expect(Date.parse(backup.nextRunAt ?? '') - Date.now()).toBeLessThanOrEqual(86_400_000);
    expect(localTime(cleanup.nextRunAt ?? '', 'UTC')).toBe('Sun 03:00:00');
    expect(Date.parse(cleanup.nextRunAt ?? '') - Date.now()).toBeLessThanOrEqual(7 * 86_400_000);

    const anonymous = await api.app.inject({ method: 'GET', url: '/api/schedules' });
    expect(anonymous.statusCode).toBe(401);
  });

  it('PUT refuses a bad change with 400 (or 401/403) and changes nothing', async () => {
    const before = await listSchedules(api);
    const schedulerBefore = await api.services.queues.backups.getJobScheduler('schedule-backup');
    expect(schedulerBefore).toMatchObject({ pattern: '0 2 * * *', tz: 'UTC' });

    const refused: [string, unknown, string][] = [
      ['backup', { pattern: '99 * * * *' }, 'pattern'],
      ['backup', { pattern: 'every day at two' }, 'pattern'],
      ['backup', { pattern: '* * * *' }, 'pattern'],
      ['backup', { pattern: '0 2 * * * * *' }, 'pattern'],
      ['backup', { pattern: '0 0 31 2 *' }, 'pattern'],
      ['backup', { timeZone: 'Mars/Olympus_Mons' }, 'timeZone'],
      ['backup', { enabled: 'yes' }, 'enabled'],
      ['backup', { pattern: '0 5 * * *', every: 1000 }, 'every'],
      ['backup', {}, ''],
    ];
    for (const [name, body, mentions] of refused) {
      const response = await putSchedule(api, name, body);
      expect(response.statusCode, `${name} ${JSON.stringify(body)}: ${response.body}`).toBe(400);
      const error = json(response).error;
      expect(error.code).toBe('VALIDATION_ERROR');
      expect(error.message).toContain(mentions);
    }

    const good = { enabled: false };
    expect((await putSchedule(api, 'backup', good, {})).statusCode).toBe(401);
    const user = { authorization: `Bearer ${token({ sub: 'u@example.com', role: 'USER' })}` };
    expect((await putSchedule(api, 'backup', good, user)).statusCode).toBe(403);

    expect(await listSchedules(api)).toEqual(before);
    expect(await api.services.queues.backups.getJobScheduler('schedule-backup')).toMatchObject({
      pattern: '0 2 * * *',
      tz: 'UTC',
      next: schedulerBefore?.next,
    });
  });

  it('PUT to an unknown schedule name is a 400 that speaks of the schedule, not of a backup id', async () => {
    const response = await putSchedule(api, 'nightly', { enabled: false });
    expect(response.statusCode, response.body).toBe(400);
    const error = json(response).error;
    expect(error.message).toContain('name');
    // Whatever code is chosen for it, a schedule name is not a backup id.
    expect(error.code).not.toBe('INVALID_BACKUP_ID');
  });

  it('an invalid schedule in the configuration stops the worker at start, naming the key', async () => {
    for (const [key, value] of [
      ['BACKUP_SCHEDULE', '99 * * * *'],
      ['BACKUP_CLEANUP_SCHEDULE', 'weekly'],
      ['VERIFY_SCHEDULE', '0 4 * *'],
      ['BACKUP_TIMEZONE', 'Mars/Olympus_Mons'],
    ] as const) {
      const failing = new WorkerProcess({ ...env.env, [key]: value });
      workers.push(failing);
      expect(await failing.exited).toEqual({ code: 1, signal: null });
      await vi.waitFor(() => expect(failing.stderr.join('')).toContain(key), {
        timeout: 5_000,
        interval: 20,
      });
      expect(failing.lines.some((entry) => entry.msg === 'worker started')).toBe(false);
    }
    // Nothing it did not start touched the schedulers.
    expect(await api.services.queues.backups.getJobScheduler('schedule-backup')).toMatchObject({
      pattern: '0 2 * * *',
    });
  });
});

describe('a schedule firing for real', () => {
  it('runs a scheduled backup as an ordinary job, then stops once disabled', async () => {
    const env = await newEnv('fire', {
      AUTO_BACKUP_ENABLED: 'true',
      BACKUP_SCHEDULE: '*/2 * * * * *',
    });
    await seedPanelSchema(env.databaseUrl, 50);
    const api = await connectedApi(env.env);
    const running = await worker(env.env);

    const scheduled = await vi.waitFor(
      async () => {
        const found = (await listBackups(api)).find((manifest) => manifest.type === 'scheduled');
        if (!found) throw new Error('no scheduled backup yet');
        return found;
      },
      { timeout: 30_000, interval: 200 },
    );
    expect(scheduled.requestedBy).toBe('scheduler');
    expect(scheduled.jobId).toMatch(/^repeat:schedule-backup:\d+$/);
    // The manifest is written last, inside the run: the job completes a moment after it.
    const job = await waitForJob(api, scheduled.jobId ?? '', undefined, 10_000);
    expect(job).toMatchObject({ state: 'completed', requestedBy: 'scheduler', error: null });
    expect(job.result).toEqual(scheduled);
    const logged = await running.waitForLine(
      (entry) =>
        entry.msg === 'scheduled backup completed' && entry.filename === scheduled.filename,
      10_000,
    );
    expect(logged).toMatchObject({ jobId: scheduled.jobId, level: 30 });

    const response = await putSchedule(api, 'backup', { enabled: false });
    expect(response.statusCode, response.body).toBe(200);
    expect(json<{ data: ScheduleView }>(response).data).toMatchObject({
      enabled: false,
      nextRunAt: null,
      source: 'runtime',
    });
    await vi.waitFor(
      async () =>
        expect(await scheduleOf(api, 'backup')).toMatchObject({ enabled: false, nextRunAt: null }),
      { timeout: 5_000, interval: 100 },
    );
    // A run already due may still be taken; once the queue has drained, nothing is left that
    // could fire again: no scheduler, no run waiting, delayed or running.
    const { backups } = api.services.queues;
    await vi.waitFor(
      async () =>
        expect(await backups.getJobCounts('active', 'waiting', 'delayed', 'prioritized')).toEqual({
          active: 0,
          waiting: 0,
          delayed: 0,
          prioritized: 0,
        }),
      { timeout: 30_000, interval: 100 },
    );
    expect(await schedulerKeys(api)).toEqual({ backups: [], maintenance: [] });
    const settled = await listBackups(api);
    expect(settled.every((manifest) => manifest.type === 'scheduled')).toBe(true);
    // Every scheduled run on record finished, and each one made exactly one backup.
    const runs = await backups.getJobs(['completed', 'failed']);
    expect(runs.every((run) => run.id?.startsWith('repeat:schedule-backup:'))).toBe(true);
    expect(runs.filter((run) => run.finishedOn && !run.failedReason)).toHaveLength(settled.length);
  });

  it('a scheduled clean-up applies the configured retention and says how many it deleted', async () => {
    const env = await newEnv('firecl', { BACKUP_KEEP_LAST: '1' });
    const api = await connectedApi(env.env);
    const running = await worker(env.env);
    for (let i = 0; i < 3; i += 1) {
      const made = await waitForJob(api, await postJob(api, '/api/backup', {}));
      expect(made.state).toBe('completed');
    }
    const newest = (await listBackups(api))[0];

    const changed = await putSchedule(api, 'cleanup', { pattern: '* * * * * *', enabled: true });
    expect(changed.statusCode, changed.body).toBe(200);
    const logged = await running.waitForLine(
      (entry) => entry.msg === 'scheduled cleanup completed',
      15_000,
    );
    expect(logged).toMatchObject({ deletedCount: 2, jobId: expect.stringMatching(/^repeat:/) });
    // Logged as the run ends: the job reads as completed a moment later.
    const job = await waitForJob(api, String(logged.jobId), undefined, 10_000);
    expect(job.state).toBe('completed');
    expect(job.result).toMatchObject({ deletedCount: 2, keptLast: 1, kept: [newest?.id] });
    expect((await putSchedule(api, 'cleanup', { enabled: false })).statusCode).toBe(200);
    expect((await listBackups(api)).map((manifest) => manifest.id)).toEqual([newest?.id]);
  });

  it('a scheduled backup that fails is retried with backoff, and the failure is visible', async () => {
    const env = await newEnv('firefail', {});
    const missing = `${env.name}_missing`;
    const variables = {
      ...env.env,
      DATABASE_URL: urlWithDatabase(env.serverUrl, missing),
      AUTO_BACKUP_ENABLED: 'true',
      BACKUP_SCHEDULE: '* * * * * *',
      BACKUP_ATTEMPTS: '2',
    };
    const api = await connectedApi(variables);
    const running = await worker(variables);
    const { backups } = api.services.queues;

    // The first attempt fails and the run waits out its backoff (30 s), visible while it waits.
    const warned = await running.waitForLine(
      (entry) => entry.msg === 'scheduled backup failed',
      20_000,
    );
    expect(warned).toMatchObject({ level: 40, final: false, retryable: true });
    expect(['DATABASE_UNAVAILABLE', 'PG_DUMP_FAILED']).toContain(warned.code);
    const jobId = String(warned.jobId);
    expect(jobId).toMatch(/^repeat:schedule-backup:\d+$/);
    // The failure is logged just before BullMQ moves the run to its backoff: poll until it has.
    const retrying = await waitForJob(
      api,
      jobId,
      (job) => job.attemptsMade >= 1 && job.state !== 'running',
      10_000,
    );
    expect(retrying, JSON.stringify(retrying)).toMatchObject({
      state: 'queued',
      attemptsMade: 1,
      error: null,
    });
    expect(['DATABASE_UNAVAILABLE', 'PG_DUMP_FAILED']).toContain(retrying.lastError?.code);
    expect(retrying.lastError?.message).toContain(missing);
    const bullJob = await backups.getJob(jobId);
    expect(await bullJob?.getState()).toBe('delayed');
    expect(bullJob?.opts.backoff).toMatchObject({ type: 'exponential', delay: 30_000 });
    expect(bullJob?.delay).toBe(30_000);

    // Brought forward rather than waited for: the last attempt fails for good, at error level.
    await bullJob?.promote();
    const failed = await waitForJob(api, jobId, (job) => job.state === 'failed', 20_000);
    expect(failed.attemptsMade).toBe(2);
    expect(['DATABASE_UNAVAILABLE', 'PG_DUMP_FAILED']).toContain(failed.error?.code);
    const final = await running.waitForLine(
      (entry: LogLine) =>
        entry.msg === 'scheduled backup failed' && entry.jobId === jobId && entry.final === true,
      10_000,
    );
    expect(final.level).toBe(50);
    expect(await listBackups(api)).toEqual([]);
    expect((await putSchedule(api, 'backup', { enabled: false })).statusCode).toBe(200);
  });
});

describe('runtime changes and the configuration', () => {
  it('a change through the API holds across restarts until the configuration changes', async () => {
    const env = await newEnv('rule', schedulesOn);
    const api = await connectedApi(env.env);
    let running = await worker(env.env);
    const { backups } = api.services.queues;

    const response = await putSchedule(api, 'backup', {
      pattern: '0 5 * * *',
      timeZone: 'Europe/Lisbon',
    });
    expect(response.statusCode, response.body).toBe(200);
    const changed = json<{ data: ScheduleView; message: string }>(response);
    expect(changed.data).toMatchObject({
      name: 'backup',
      pattern: '0 5 * * *',
      timeZone: 'Europe/Lisbon',
      enabled: true,
      source: 'runtime',
      updatedBy: 'admin@example.com',
    });
    expect(Date.parse(changed.data.updatedAt ?? '')).toBeLessThanOrEqual(Date.now());
    expect(localTime(changed.data.nextRunAt ?? '', 'Europe/Lisbon')).toMatch(/ 05:00:00$/);
    expect(await scheduleOf(api, 'backup')).toEqual(changed.data);
    expect(await scheduleOf(api, 'cleanup')).toMatchObject({ source: 'config' });
    expect(await backups.getJobScheduler('schedule-backup')).toMatchObject({
      pattern: '0 5 * * *',
      tz: 'Europe/Lisbon',
    });

    // Same configuration: the admin's change survives the restart.
    await running.stop();
    running = await worker(env.env);
    expect(await line(running, 'backup schedule: backups run at this cron')).toMatchObject({
      cron: '0 5 * * *',
      timeZone: 'Europe/Lisbon',
      source: 'runtime',
    });
    expect(await backups.getJobScheduler('schedule-backup')).toMatchObject({
      pattern: '0 5 * * *',
      tz: 'Europe/Lisbon',
    });
    expect(await scheduleOf(api, 'backup')).toMatchObject({
      pattern: '0 5 * * *',
      source: 'runtime',
    });
    expect(await schedulerKeys(api)).toEqual({
      backups: ['schedule-backup'],
      maintenance: ['schedule-cleanup'],
    });

    // The configuration of that schedule changed: it wins, the runtime change is dropped.
    await running.stop();
    const edited = { ...env.env, BACKUP_SCHEDULE: '0 6 * * *' };
    running = await worker(edited);
    expect(
      await line(
        running,
        'schedule configuration changed since a runtime change: the configuration applies',
      ),
    ).toMatchObject({ schedules: ['backup'] });
    expect(await line(running, 'backup schedule: backups run at this cron')).toMatchObject({
      cron: '0 6 * * *',
      timeZone: 'UTC',
      source: 'config',
    });
    expect(await backups.getJobScheduler('schedule-backup')).toMatchObject({
      pattern: '0 6 * * *',
      tz: 'UTC',
    });
    const editedApi = await connectedApi(edited);
    const afterEdit = await scheduleOf(editedApi, 'backup');
    expect(afterEdit).toMatchObject({
      pattern: '0 6 * * *',
      timeZone: 'UTC',
      enabled: true,
      source: 'config',
      updatedBy: null,
    });
    expect(localTime(afterEdit.nextRunAt ?? '', 'UTC')).toMatch(/ 06:00:00$/);

    // And a further restart with that configuration keeps it.
    await running.stop();
    running = await worker(edited);
    await line(running, 'worker started');
    expect(
      running.lines.some((entry) => String(entry.msg).startsWith('schedule configuration changed')),
    ).toBe(false);
    expect(await backups.getJobScheduler('schedule-backup')).toMatchObject({
      pattern: '0 6 * * *',
      tz: 'UTC',
    });
    expect(await scheduleOf(editedApi, 'backup')).toMatchObject({
      pattern: '0 6 * * *',
      source: 'config',
    });
    await running.stop();
  });
});
