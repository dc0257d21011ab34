import type { TargetsJob, TargetsPgkeepRun, TargetsRawRun, TargetsSection } from './lib/results.js';
import { median } from './lib/util.js';
import { mb, metaLine, pct, s, type TargetCheck, table, x } from './report-sections.js';

/**
 * The targets section of BENCHMARKS.md: a nightly run of many small databases by pgkeep
 * against the shell loop, and where pgkeep's extra time goes. Pure: numbers in, markdown out.
 */

const ms = (value: number) => `${value.toFixed(0)} ms`;
const walls = (runs: { wallMs: number }[]) => runs.map((run) => run.wallMs);
const runList = (runs: { wallMs: number }[]) =>
  runs.map((run) => (run.wallMs / 1000).toFixed(2)).join(' / ');
const medianOf = <T>(items: T[], value: (item: T) => number) => median(items.map(value));

/** Database i's raw pipeline time in the raw run paired with a pgkeep run (same round). */
function rawOf(section: TargetsSection, raw: TargetsRawRun, job: TargetsJob): number {
  const index = Number(job.database.slice(section.databases.prefix.length)) - 1;
  return raw.perDatabaseMs[index] ?? Number.NaN;
}

/** Per slot of the server: its holds in order, and the time around and between them. */
function slotLanes(run: TargetsPgkeepRun) {
  const bySlot = new Map<string, TargetsJob[]>();
  for (const job of run.jobs) bySlot.set(job.slot, [...(bySlot.get(job.slot) ?? []), job]);
  return [...bySlot.values()].map((jobs) => {
    jobs.sort((a, b) => a.slotAcquiredMs - b.slotAcquiredMs);
    const gaps = jobs
      .slice(1)
      .map((job, i) => job.slotAcquiredMs - (jobs[i] as TargetsJob).slotReleasedMs);
    const first = jobs[0] as TargetsJob;
    const last = jobs.at(-1) as TargetsJob;
    return {
      before: first.slotAcquiredMs,
      holding: jobs.reduce((sum, job) => sum + job.slotReleasedMs - job.slotAcquiredMs, 0),
      idle: gaps.reduce((sum, gap) => sum + gap, 0),
      gaps,
      after: run.wallMs - last.slotReleasedMs,
    };
  });
}

interface Setting {
  label: string;
  raw: TargetsRawRun[];
  pgkeep: TargetsPgkeepRun[];
}

/** The medians of one setting (cap 1 against one lane, cap 2 against two), for the tables. */
function breakdown(section: TargetsSection, setting: Setting) {
  const n = section.databases.count;
  const { raw, pgkeep } = setting;
  const jobs = pgkeep.flatMap((run) => run.jobs);
  const paired = pgkeep.flatMap((run, round) =>
    run.jobs.map((job) => ({ job, raw: rawOf(section, raw[round] as TargetsRawRun, job) })),
  );
  const lanes = pgkeep.map((run) => slotLanes(run));
  const perRun = (value: (lane: ReturnType<typeof slotLanes>[number]) => number) =>
    median(
      lanes.map((runLanes) => runLanes.reduce((sum, l) => sum + value(l), 0) / runLanes.length),
    );
  const rawLanePerRun = raw.map((run) => run.perDatabaseMs.reduce((a, b) => a + b, 0) / run.lanes);
  return {
    extraPerDatabase: (median(walls(pgkeep)) - median(walls(raw))) / n,
    fired: medianOf(pgkeep, (run) => run.discoverStartedMs),
    discover: medianOf(pgkeep, (run) => run.discoverFinishedMs - run.discoverStartedMs),
    firstSlot: medianOf(pgkeep, (run) => Math.min(...run.jobs.map((job) => job.slotAcquiredMs))),
    pickedToJobStart: medianOf(jobs, (job) => job.jobStartedMs - job.startedMs),
    beforeSlot: medianOf(jobs, (job) => job.slotAskedMs - job.jobStartedMs),
    slotWait: medianOf(jobs, (job) => job.slotAcquiredMs - job.slotAskedMs),
    prepare: medianOf(jobs, (job) => job.backupStartedMs - job.slotAcquiredMs),
    dump: medianOf(jobs, (job) => job.backupCompletedMs - job.backupStartedMs),
    rawSame: medianOf(paired, ({ raw: rawMs }) => rawMs),
    closing: medianOf(jobs, (job) => job.slotReleasedMs - job.backupCompletedMs),
    afterSlot: medianOf(jobs, (job) => job.jobCompletedMs - job.slotReleasedMs),
    completion: medianOf(jobs, (job) => job.finishedMs - job.jobCompletedMs),
    holdOverRaw: medianOf(
      paired,
      ({ job, raw: rawMs }) => job.slotReleasedMs - job.slotAcquiredMs - rawMs,
    ),
    idleGap: median(lanes.flat().flatMap((lane) => lane.gaps)),
    laneBefore: perRun((lane) => lane.before),
    laneHolding: perRun((lane) => lane.holding),
    laneIdle: perRun((lane) => lane.idle),
    laneAfter: perRun((lane) => lane.after),
    rawLane: median(rawLanePerRun),
    cpuPerBackup: medianOf(pgkeep, (run) => run.workerCpuMs / n),
  };
}

export function targetsTables(section: TargetsSection, checks: TargetCheck[]): string {
  const { databases } = section;
  const serialLabel = 'raw loop, one at a time';
  const lanesLabel = 'raw loop, two lanes';
  const settings: (Setting & { rawLabel: string; target: boolean })[] = [
    {
      label: 'maxConcurrentJobs 1',
      raw: section.raw.serial,
      pgkeep: section.pgkeep.cap1,
      rawLabel: serialLabel,
      target: true,
    },
    {
      label: 'maxConcurrentJobs 2',
      raw: section.raw.twoLanes,
      pgkeep: section.pgkeep.cap2,
      rawLabel: lanesLabel,
      target: true,
    },
  ];
  const moreJobs = section.pgkeep.cap2MoreJobs ?? [];
  if (moreJobs.length > 0) {
    settings.push({
      label: `maxConcurrentJobs 2, \`BACKUP_CONCURRENCY=${section.moreJobsConcurrency}\``,
      raw: section.raw.twoLanes,
      pgkeep: moreJobs,
      rawLabel: lanesLabel,
      target: false,
    });
  }
  const rows: string[][] = [];
  for (const setting of settings) {
    const rawMs = median(walls(setting.raw));
    const pgMs = median(walls(setting.pgkeep));
    const byRound = setting.pgkeep.map(
      (run, round) => run.wallMs / (setting.raw[round]?.wallMs ?? Number.NaN),
    );
    if (setting.target) {
      rows.push([
        `\`pg_dump -Fc -Z0 | zstd -3 -T2\`, ${setting.rawLabel}`,
        s(rawMs),
        runList(setting.raw),
        ms(rawMs / databases.count),
        '—',
      ]);
    }
    rows.push([
      `pgkeep nightly run, ${setting.label}${setting.target ? '' : ' (not a target: one job waits for each slot)'}`,
      s(pgMs),
      runList(setting.pgkeep),
      ms(pgMs / databases.count),
      `${x(pgMs / rawMs)}; by round ${byRound.map(x).join(' / ')}, median ${x(median(byRound))}`,
    ]);
    if (!setting.target) continue;
    const ratio = pgMs / rawMs;
    checks.push({
      section: 'targets',
      target: `nightly run of ${databases.count} databases, ${setting.label}, ≤ 1.15 × the ${setting.rawLabel}`,
      measured: x(ratio),
      ok: ratio <= 1.15,
      miss: `${pct(ratio / 1.15 - 1)} over`,
    });
  }

  const broken = settings.map((setting) => breakdown(section, setting));
  type Breakdown = ReturnType<typeof breakdown>;
  const line = (label: string, value: (b: Breakdown) => string) => [label, ...broken.map(value)];
  const overhead = [
    line('**extra wall time per database**: (pgkeep − raw loop) ÷ databases', (b) =>
      ms(b.extraPerDatabase),
    ),
    line('schedule time → `discover` job picked up', (b) => ms(b.fired)),
    line('`discover` job: list the databases, queue a backup each', (b) => ms(b.discover)),
    line('schedule time → first server slot taken', (b) => ms(b.firstSlot)),
    line('_per backup (median):_ BullMQ pick-up → `job started`', (b) => ms(b.pickedToJobStart)),
    line('`job started` → asks for a slot (storage and database locks)', (b) => ms(b.beforeSlot)),
    line('waiting for a slot', (b) => ms(b.slotWait)),
    line('slot taken → pg_dump started (connect, snapshot, catalog queries)', (b) => ms(b.prepare)),
    line('pg_dump started → backup completed (dump, row counts, sha256, fsync, manifest)', (b) =>
      ms(b.dump),
    ),
    line('the same database, raw pipeline (same round)', (b) => ms(b.rawSame)),
    line('backup completed → slot released', (b) => ms(b.closing)),
    line('slot released → `job completed` (other locks released)', (b) => ms(b.afterSlot)),
    line('`job completed` → finished in BullMQ', (b) => ms(b.completion)),
    line('**slot held − raw pipeline of the same database**', (b) => ms(b.holdOverRaw)),
    line('**server slot idle between two backups**', (b) => ms(b.idleGap)),
    line('_per slot, summed over the run:_ before its first backup', (b) => s(b.laneBefore)),
    line('held by backups', (b) => s(b.laneHolding)),
    line('idle between backups', (b) => s(b.laneIdle)),
    line('after its last backup (to the last job finished)', (b) => s(b.laneAfter)),
    line('raw loop: pipelines per lane, summed', (b) => s(b.rawLane)),
    line('worker CPU per backup', (b) => ms(b.cpuPerBackup)),
  ];
  const loads = [
    ...section.raw.serial,
    ...section.pgkeep.cap1,
    ...section.raw.twoLanes,
    ...section.pgkeep.cap2,
    ...moreJobs,
  ].map((run) => run.load);
  return [
    metaLine(section),
    '',
    `${databases.count} databases \`${databases.prefix}NN\` on one server: ${databases.rowsPerDatabase}; ${mb(databases.sizeBytes)} on disk in all, \`pg_dump -Fc -Z0\` writes ${mb(databases.dumpBytes)} in all. pgkeep: one worker, \`BACKUP_CONCURRENCY=${section.backupConcurrency}\`, \`LOG_LEVEL=info\`, a targets file with one server (\`maxConcurrentJobs\` 1 or 2) and one discovery target (\`database: "*"\`, \`include\` the prefix) whose backup schedule fires once, a few seconds after the file is reloaded. The raw loop runs \`pg_dump -Fc -Z0 db | zstd -3 -T2 -q -c > file\` for each database, one at a time or in two lanes taking the next database when one ends.`,
    '',
    table(['method', 'wall (median)', 'runs (s)', 'per database', 'pgkeep ÷ raw'], rows),
    '',
    `pgkeep's wall: from the schedule's time to the last backup job finished in BullMQ; each backup is checked (manifest listed, \`rowCounts\` equal to the database's rows). Raw: first pg_dump started to last zstd exited. The target is checked on the ratio of the medians; "by round" divides each pgkeep run by the raw run just before it, which the machine's changing load hits less. A round runs raw one lane, pgkeep cap 1, raw two lanes, pgkeep cap 2${moreJobs.length > 0 ? `, then a second pgkeep (its worker with \`BACKUP_CONCURRENCY=${section.moreJobsConcurrency}\`) cap 2, compared with the same two-lane raw run` : ''}; one untimed run of each kind warms up first. Load average (1 min) at each run: ${loads.map((load) => load.toFixed(1)).join(', ')}.`,
    '',
    '#### Where pgkeep spends the time of a nightly run',
    '',
    table(['', ...settings.map((setting) => setting.label)], overhead),
    '',
    "Times come from BullMQ (queued, picked up, finished), the worker's own log lines (`job started`, `backup started`, `backup completed`, `job completed`) and its `server slot released` line (the slot's acquiredAt, releasedAt and wait), medians over every backup of every run. A backup holds its server slot from \"slot taken\" to \"slot released\"; the raw pipeline of the same database in the same round is what that hold would be without pgkeep's own work. With `maxConcurrentJobs` 1 and two jobs at once in the worker, the next backup takes its locks and waits on the slot while the current one dumps, so only the slot's hand-over separates two dumps; with 2 slots and 2 jobs at once, every job's work outside its slot (locks before, release and completion after) leaves its slot idle. Per slot, before + held + idle + after = the wall time.",
  ].join('\n');
}
