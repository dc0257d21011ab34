import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { type BenchContext, seconds, sectionMeta } from '../lib/context.js';
import { serverUrl, toolEnv } from '../lib/db.js';
import { loadAverage } from '../lib/machine.js';
import { cpuMs } from '../lib/memory.js';
import { type JobView, type PgkeepStack, startPgkeep } from '../lib/pgkeep.js';
import type {
  TargetsJob,
  TargetsPgkeepRun,
  TargetsRawRun,
  TargetsSection,
} from '../lib/results.js';
import {
  createTargetDatabases,
  dropTargetDatabases,
  type TargetDatabase,
  targetDatabaseNames,
} from '../lib/target-databases.js';
import { countOutputBytes, runPipeline } from '../lib/tools.js';
import { sleep } from '../lib/util.js';

/** The server and the discovery target of the targets file; backups are `bench/<database>`. */
const SERVER = 'bench';
const DISCOVERY = 'nightly';
/** Jobs at once in the one worker: at least the largest cap measured, so the cap is the limit. */
const BACKUP_CONCURRENCY = 2;
/** The second pgkeep's: one job more than the cap of 2, so one waits for each slot. */
const MORE_JOBS_CONCURRENCY = 3;
/** How far ahead of now a run is scheduled: time for the reload to reach the worker. */
const LEAD_MS = 3_000;

/** `pg_dump -Fc -Z0 | zstd -3 -T2` of each database, `lanes` at a time, as a shell loop would. */
async function rawLoop(names: string[], lanes: number, outDir: string): Promise<TargetsRawRun> {
  const perDatabaseMs = names.map(() => 0);
  const load = loadAverage()[0] ?? 0;
  let next = 0;
  const lane = async () => {
    for (let index = next++; index < names.length; index = next++) {
      const name = names[index] as string;
      perDatabaseMs[index] = await runPipeline(
        [
          { command: 'pg_dump', args: ['-Fc', '-Z0', name] },
          { command: 'zstd', args: ['-3', '-T2', '-q', '-c'] },
        ],
        { env: toolEnv(name), stdoutFile: path.join(outDir, `${name}.dump.zst`) },
      );
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: lanes }, lane));
  const wallMs = performance.now() - started;
  let bytes = 0;
  for (const name of names) bytes += (await stat(path.join(outDir, `${name}.dump.zst`))).size;
  return { lanes, wallMs, perDatabaseMs, bytes, load };
}

/** A cron pattern (seconds first) that fires at `at` only, in UTC. */
function cronAt(at: Date): string {
  return [
    at.getUTCSeconds(),
    at.getUTCMinutes(),
    at.getUTCHours(),
    at.getUTCDate(),
    at.getUTCMonth() + 1,
    '*',
  ].join(' ');
}

export function targetsFile(prefix: string, maxConcurrentJobs: number, backup: string): string {
  return `${JSON.stringify(
    {
      servers: { [SERVER]: { url: serverUrl('postgres'), maxConcurrentJobs } },
      targets: {
        [DISCOVERY]: {
          server: SERVER,
          database: '*',
          include: [`${prefix}*`],
          schedules: { backup, cleanup: 'off', verify: 'off' },
          timeZone: 'UTC',
          destinations: ['local'],
        },
      },
    },
    null,
    2,
  )}\n`;
}

async function getJob(stack: PgkeepStack, jobId: string): Promise<JobView | undefined> {
  const { status, body } = await stack.request<{ data: JobView }>(
    'GET',
    `/api/jobs/${encodeURIComponent(jobId)}`,
  );
  if (status === 404) return undefined;
  if (status !== 200) throw new Error(`GET job ${jobId}: ${status}`);
  return body.data;
}

/** Polls one job every `intervalMs` until it completed; a failed job is an error. */
async function jobDone(
  stack: PgkeepStack,
  jobId: string,
  deadline: number,
  intervalMs = 100,
): Promise<JobView> {
  for (;;) {
    const job = await getJob(stack, jobId);
    if (job?.state === 'completed') return job;
    if (job?.state === 'failed') {
      throw new Error(`job ${jobId} failed: ${job.error?.code} ${job.error?.message}`);
    }
    if (Date.now() > deadline) throw new Error(`job ${jobId} is ${job?.state ?? 'not there'}`);
    await sleep(intervalMs);
  }
}

interface JobLines {
  jobStarted?: number;
  backupStarted?: number;
  backupCompleted?: number;
  slot?: { slot: string; acquiredAt: string; releasedAt: string; waitedMs: number };
  jobCompleted?: number;
}

const complete = (lines: JobLines | undefined) =>
  lines?.jobStarted !== undefined &&
  lines.backupStarted !== undefined &&
  lines.backupCompleted !== undefined &&
  lines.slot !== undefined &&
  lines.jobCompleted !== undefined;

/**
 * The times of these jobs' lines in the worker's log (pino `time`, ms): job started, backup
 * started, backup completed, server slot released, job completed. The log reaches its file
 * through a pipe, so it is read again until every line is there.
 */
async function jobLines(logFile: string, jobIds: Set<string>): Promise<Map<string, JobLines>> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const found = new Map<string, JobLines>();
    for (const text of (await readFile(logFile, 'utf8')).split('\n')) {
      if (!text.startsWith('{')) continue;
      const line = JSON.parse(text) as {
        jobId?: string;
        msg: string;
        time: number;
      } & NonNullable<JobLines['slot']>;
      if (!line.jobId || !jobIds.has(line.jobId)) continue;
      const entry = found.get(line.jobId) ?? {};
      if (line.msg === 'job started') entry.jobStarted = line.time;
      else if (line.msg === 'backup started') entry.backupStarted = line.time;
      else if (line.msg === 'backup completed') entry.backupCompleted = line.time;
      else if (line.msg === 'job completed') entry.jobCompleted = line.time;
      else if (line.msg === 'server slot released') {
        const { slot, acquiredAt, releasedAt, waitedMs } = line;
        entry.slot = { slot, acquiredAt, releasedAt, waitedMs };
      }
      found.set(line.jobId, entry);
    }
    if ([...jobIds].every((jobId) => complete(found.get(jobId)))) return found;
    if (Date.now() > deadline) throw new Error('the worker log lacks lines of some backups');
    await sleep(50);
  }
}

/**
 * One nightly run: the targets file gets `maxConcurrentJobs` and a backup schedule that fires
 * once, LEAD_MS from now; the worker reloads it; the scheduled `discover` job queues one backup
 * per database. Waits for every backup and checks each against the database it came from.
 */
export async function pgkeepNight(
  stack: PgkeepStack,
  file: string,
  prefix: string,
  maxConcurrentJobs: number,
  databases: TargetDatabase[],
): Promise<TargetsPgkeepRun> {
  const scheduled = Math.ceil((Date.now() + LEAD_MS) / 1000) * 1000;
  await writeFile(file, targetsFile(prefix, maxConcurrentJobs, cronAt(new Date(scheduled))));
  const reload = await stack.request('POST', '/api/targets/reload', {});
  if (reload.status !== 202) throw new Error(`reload: ${reload.status}`);
  const pid = stack.worker.pid ?? 0;
  const cpuBefore = cpuMs(pid);
  const load = loadAverage()[0] ?? 0;

  const discoverId = `repeat:discover-backup.${DISCOVERY}:${scheduled}`;
  // A run the reload did not schedule in time would never come: fail instead of waiting.
  while (!(await getJob(stack, discoverId))) {
    if (Date.now() > scheduled + 2_000) {
      throw new Error(`the run scheduled at ${new Date(scheduled).toISOString()} was not queued`);
    }
    await sleep(100);
  }
  const deadline = scheduled + 30 * 60_000;
  const discover = await jobDone(stack, discoverId, deadline);
  const queued = (discover.result as { queued: { target: string; jobId: string }[] }).queued;
  const expected = new Map(databases.map((db) => [`${SERVER}/${db.name}`, db]));
  const picked = queued.map((entry) => entry.target).sort();
  if (picked.join() !== [...expected.keys()].sort().join()) {
    throw new Error(`the run queued ${picked.length} targets, not the ${expected.size} databases`);
  }
  // One job polled at a time (they end about in order): the polling stays light.
  const views: JobView[] = [];
  for (const entry of queued) views.push(await jobDone(stack, entry.jobId, deadline));
  const workerCpuMs = cpuMs(pid) - cpuBefore;

  const logged = await jobLines(
    path.join(path.dirname(file), 'worker.log'),
    new Set(queued.map((entry) => entry.jobId)),
  );
  const at = (iso: string | null) => Date.parse(iso ?? '') - scheduled;
  const jobs: TargetsJob[] = [];
  for (const [index, entry] of queued.entries()) {
    const view = views[index] as JobView;
    const manifest = view.result as {
      target: string;
      database: string;
      size: number;
      id: string;
      rowCounts: Record<string, number>;
    };
    const database = expected.get(entry.target) as TargetDatabase;
    if (
      JSON.stringify(sortKeys(manifest.rowCounts)) !== JSON.stringify(sortKeys(database.rowCounts))
    ) {
      throw new Error(
        `${entry.target}: rowCounts ${JSON.stringify(manifest.rowCounts)} differ from the database's`,
      );
    }
    const listed = await stack.request(
      'GET',
      `/api/targets/${encodeURIComponent(entry.target)}/backups/${manifest.id}`,
    );
    if (listed.status !== 200) throw new Error(`${entry.target}: backup ${manifest.id} not listed`);
    const lines = logged.get(entry.jobId) as Required<JobLines>;
    jobs.push({
      database: manifest.database,
      queuedMs: at(view.createdAt),
      startedMs: at(view.startedAt),
      jobStartedMs: lines.jobStarted - scheduled,
      slotAskedMs: at(lines.slot.acquiredAt) - lines.slot.waitedMs,
      slotAcquiredMs: at(lines.slot.acquiredAt),
      backupStartedMs: lines.backupStarted - scheduled,
      backupCompletedMs: lines.backupCompleted - scheduled,
      slotReleasedMs: at(lines.slot.releasedAt),
      jobCompletedMs: lines.jobCompleted - scheduled,
      finishedMs: at(view.finishedAt),
      slot: lines.slot.slot,
      bytes: manifest.size,
    });
  }
  return {
    maxConcurrentJobs,
    wallMs: Math.max(...jobs.map((job) => job.finishedMs)),
    discoverStartedMs: at(discover.startedAt),
    discoverFinishedMs: at(discover.finishedAt),
    workerCpuMs,
    load,
    jobs,
  };
}

function sortKeys(counts: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(counts).sort(([a], [b]) => a.localeCompare(b)));
}

/**
 * Section 7. A nightly run of many small databases on one server: a discovery target picks
 * them, its schedule fires once, and each database gets its own backup job, at most
 * `maxConcurrentJobs` at a time (1, then 2). Against it, the shell loop over the same
 * databases, one at a time and two lanes at a time. Rounds alternate raw and pgkeep. A second
 * pgkeep, with one job more than the cap at once, runs cap 2 again at the end of each round.
 */
export async function benchTargets(ctx: BenchContext, count: number): Promise<TargetsSection> {
  const meta = sectionMeta(ctx.runs, ctx.code);
  const prefix = `${ctx.database}_t_`;
  const names = targetDatabaseNames(prefix, count);
  const dir = path.join(ctx.workDir, 'targets');
  const rawOut = path.join(dir, 'raw');
  await mkdir(rawOut, { recursive: true });
  await mkdir(path.join(dir, 'more-jobs'));
  const file = path.join(dir, 'targets.json');
  const moreJobsFile = path.join(dir, 'more-jobs', 'targets.json');
  let stack: PgkeepStack | undefined;
  let moreJobs: PgkeepStack | undefined;
  const stop = async () => {
    await Promise.all([stack?.stop(), moreJobs?.stop()]);
    stack = undefined;
    moreJobs = undefined;
    await dropTargetDatabases(names);
  };
  ctx.cleanups?.add(stop);
  try {
    const databases = await createTargetDatabases(names, ctx.log);
    let dumpBytes = 0;
    for (const name of names) {
      dumpBytes += await countOutputBytes('pg_dump', ['-Fc', '-Z0', name], toolEnv(name));
    }
    const start = async (targets: string, concurrency: number) => {
      await writeFile(targets, targetsFile(prefix, 1, 'off'));
      const started = await startPgkeep({
        database: 'postgres',
        workDir: path.dirname(targets),
        logLevel: 'info',
        env: { TARGETS_FILE: targets, BACKUP_CONCURRENCY: String(concurrency) },
      });
      ctx.log(
        `  pgkeep with BACKUP_CONCURRENCY=${concurrency} up (worker pid ${started.worker.pid})`,
      );
      return started;
    };
    stack = await start(file, BACKUP_CONCURRENCY);
    moreJobs = await start(moreJobsFile, MORE_JOBS_CONCURRENCY);

    // Untimed: the first run of each kind pays for cold caches and code not yet compiled.
    await rawLoop(names, 1, rawOut);
    await pgkeepNight(stack, file, prefix, 2, databases);
    await pgkeepNight(moreJobs, moreJobsFile, prefix, 2, databases);

    const result: TargetsSection = {
      ...meta.finish(),
      databases: {
        count,
        prefix,
        sizeBytes: databases.reduce((sum, db) => sum + db.sizeBytes, 0),
        dumpBytes,
        rowsPerDatabase:
          '3 tables (customers, orders, events): 5,000 / 20,000 / 10,000 rows × 1 to 2.5',
      },
      backupConcurrency: BACKUP_CONCURRENCY,
      raw: { serial: [], twoLanes: [] },
      pgkeep: { cap1: [], cap2: [], cap2MoreJobs: [] },
      moreJobsConcurrency: MORE_JOBS_CONCURRENCY,
    };
    const logRun = (label: string, ms: number, load: number) =>
      ctx.log(`  ${label}: ${seconds(ms)} (load ${load.toFixed(1)})`);
    for (let round = 1; round <= ctx.runs; round += 1) {
      ctx.log(` round ${round}/${ctx.runs}`);
      const serial = await rawLoop(names, 1, rawOut);
      result.raw.serial.push(serial);
      logRun('raw loop, one at a time', serial.wallMs, serial.load);
      const cap1 = await pgkeepNight(stack, file, prefix, 1, databases);
      result.pgkeep.cap1.push(cap1);
      logRun('pgkeep, maxConcurrentJobs 1', cap1.wallMs, cap1.load);
      const lanes = await rawLoop(names, 2, rawOut);
      result.raw.twoLanes.push(lanes);
      logRun('raw loop, two lanes', lanes.wallMs, lanes.load);
      const cap2 = await pgkeepNight(stack, file, prefix, 2, databases);
      result.pgkeep.cap2.push(cap2);
      logRun('pgkeep, maxConcurrentJobs 2', cap2.wallMs, cap2.load);
      const wide = await pgkeepNight(moreJobs, moreJobsFile, prefix, 2, databases);
      result.pgkeep.cap2MoreJobs?.push(wide);
      logRun(
        `pgkeep, maxConcurrentJobs 2, BACKUP_CONCURRENCY=${MORE_JOBS_CONCURRENCY}`,
        wide.wallMs,
        wide.load,
      );
    }
    return { ...result, ...meta.finish() };
  } finally {
    await stop();
    ctx.cleanups?.delete(stop);
    await rm(dir, { recursive: true, force: true });
  }
}
