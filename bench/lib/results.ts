import type { RssPeaks } from './memory.js';

/** The raw numbers of every bench run, by scale; BENCHMARKS.md is rendered from them. */
export interface BenchResults {
  note: string;
  scales: Record<string, ScaleResults>;
}

export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  node: string;
  postgresServer: string;
  pgDump: string;
  pgRestore: string;
  zstd: string;
  redis: string;
}

/**
 * One run's results, filed under `results.scales[key]`: the key is the scale (`"0.3"`) for the
 * panel dataset and `<dataset>@<scale>` (`"many-tables@0.3"`) for the others.
 */
export interface ScaleResults {
  scale: number;
  machine: MachineInfo;
  dataset: {
    /** Which generated dataset (bench/generate-dataset.ts); absent in older runs: `panel`. */
    kind?: 'panel' | 'long-bodies' | 'many-tables';
    /** Its tables (what a parallel dump or restore spreads over); absent in older runs. */
    tables?: number;
    database: string;
    sizeBytes: number;
    counts: Record<string, number>;
    generatedMs: number | null;
    /** Bytes of `pg_dump -Fc -Z0` of the dataset: the data every backup reads. */
    dumpBytes: number;
  };
  sections: Partial<{
    backup: BackupSection;
    restore: RestoreSection;
    downtime: DowntimeSection;
    api: ApiSection;
    start: StartSection;
    targets: TargetsSection;
    pitr: PitrSection;
    limits: LimitsSection;
  }>;
}

export interface SectionMeta {
  startedAt: string;
  finishedAt: string;
  /** os.loadavg() when the section started (1, 5, 15 min). */
  loadAverage: number[];
  runs: number;
  /** The code measured: `git describe --always --dirty` of apps/ and packages/ at the start. */
  code?: string;
}

export interface TimedRun {
  ms: number;
  bytes?: number;
  /** pgkeep only: the job's own duration as it reports it (lock acquired → done). */
  jobMs?: number;
  /** pgkeep only: CPU time the worker process itself used during the run (ms). */
  workerCpuMs?: number;
  /** pgkeep only: ms after the POST at which each job phase was first seen (50 ms polls). */
  phases?: Record<string, number>;
}

/**
 * How a backup was taken: one pg_dump stream (custom format) or a parallel dump
 * (`format: 'directory'`, `jobs` pg_dump workers). Absent: single, custom, 1 job.
 */
export interface BackupShape {
  variant: 'single' | 'parallel';
  jobs: number;
  format: 'custom' | 'directory';
}

export interface Variant {
  label: string;
  runs: TimedRun[];
  shape?: BackupShape;
}

export interface WorkerMemory {
  /** RSS of the idle worker when the section started (MB). */
  idleMb: number;
  /** Peak RSS of the worker over the section's pgkeep runs, sampled every 50 ms (MB). */
  selfPeakMb: number;
  /** VmHWM of the worker at the end of the section: its peak since it started (MB). */
  hwmMb: number;
  /** Peak summed RSS of the worker's children (pg_dump, zstd, pg_restore…) (MB). */
  childrenPeakMb: number;
  /** Peak of worker + children at one instant (MB); absent in older runs. */
  treePeakMb?: number;
  byCommandMb: RssPeaks['byCommandMb'];
}

export interface BackupSection extends SectionMeta {
  /**
   * `zstdChecked` (added later): absent from older results files. `pgkeepParallel`: pgkeep's
   * parallel backup (its `shape` says the format and jobs), when the run measured one.
   */
  variants: Record<'pgkeep' | 'zstd' | 'fc' | 'plain', Variant> & {
    zstdChecked?: Variant;
    pgkeepParallel?: Variant;
  };
  memory: WorkerMemory;
}

/** One physical limit: `bytes` went through in each run's `ms`. */
export interface LimitMeasure {
  label: string;
  bytes: number;
  /** Wall time of each run (ms). */
  runs: number[];
  /** What the bytes are (dump bytes, the table's size…), or why the measure is missing. */
  note?: string;
}

export type LimitKey =
  | 'diskWrite'
  | 'diskRead'
  | 'zstdCompress'
  | 'zstdDecompress'
  | 'pgDumpRead'
  | 'copyLargest'
  | 'pgRestoreLoad';

/**
 * The machine's own limits on the backup and restore paths, measured in the same run on the
 * same dataset: the disk (sequential write with fdatasync, O_DIRECT read), zstd alone, and
 * PostgreSQL's read and load rates without compression in the path.
 */
export interface LimitsSection extends SectionMeta {
  /** The directory the disk was measured in (the backups' directory). */
  diskDir: string;
  /** Bytes of the artifact whose decompression was measured (pgkeep's backup). */
  artifactBytes: number;
  measures: Partial<Record<LimitKey, LimitMeasure>>;
}

export interface RestoreSection extends SectionMeta {
  variants: Record<'pgkeep' | 'rawPipe' | 'rawFile' | 'fcJobs', Variant>;
  memory: WorkerMemory;
  /** What pgkeep's restore job reported: the swap's own downtime. */
  swapMs: number[];
}

export interface DowntimeRun {
  /** Longest time without a successful probe answer (ms). */
  gapMs: number;
  /** The whole restore, request to end (ms). */
  totalMs: number;
  failedProbes: number;
}

export interface DowntimeSection extends SectionMeta {
  pgkeep: DowntimeRun[];
  oldWay: DowntimeRun[];
  probeIntervalMs: number;
}

export interface ApiRun {
  requestsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  errors: number;
}

export interface ApiSection extends SectionMeta {
  connections: number;
  durationSec: number;
  backupsListed: number;
  /**
   * `job`: polls of a finished (completed) job; `jobActive`: polls of an unfinished (queued)
   * job, measured since the API keeps finished jobs' answers (absent from older runs).
   */
  variants: Record<'job' | 'list' | 'bare', ApiVariant> & { jobActive?: ApiVariant };
  /** The panel-like load (bench/sections/api-panel.ts); absent from older runs. */
  panel?: ApiPanelLoad;
}

/** One step of the panel-like load: `clients` polling their own queued job once a second. */
export interface ApiPanelStep {
  clients: number;
  polls: number;
  pollsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  errors: number;
  non2xx: number;
  /** Polls skipped because the previous one of the same client was still out. */
  late: number;
  /** CPU time the API process used over the step (ms), and that over the wall time. */
  apiCpuMs: number;
  apiCores: number;
  /** polls/s ÷ apiCores: what one core of API sustains at this load. */
  pollsPerCoreSec: number;
}

export interface ApiPanelLoad {
  pollIntervalMs: number;
  stepSeconds: number;
  p99LimitMs: number;
  steps: ApiPanelStep[];
  /** Why the steps stopped before the last one planned, or null. */
  stoppedBy: string | null;
  /** The largest step within the p99 limit and without errors. */
  sustained: ApiPanelStep | null;
}

export interface ApiVariant {
  label: string;
  runs: ApiRun[];
}

export interface StartSection extends SectionMeta {
  /** POST sent → the worker's first byte written to the backup's partial file (ms). */
  firstByteMs: number[];
  /** POST sent → BullMQ handed the job to the worker (processedOn) (ms). */
  pickedUpMs: number[];
  /** POST sent → 202 received (ms). */
  acceptedMs: number[];
  /** The job's start on the worker → pg_dump's first byte read by the worker (its progress). */
  pgDumpFirstByteMs?: number[];
  /** The same, by the raw tool: `pg_dump -Fc -Z0` started → its first byte on stdout (ms). */
  rawFirstByteMs?: number[];
}

/** One backup of a pgkeep nightly run; times in ms after the run's scheduled time. */
export interface TargetsJob {
  database: string;
  /** Queued by the discover job (BullMQ timestamp). */
  queuedMs: number;
  /** Picked up by the worker (processedOn). */
  startedMs: number;
  /** The worker's `job started` line (the job's own checks done). */
  jobStartedMs: number;
  /** Began waiting for a server slot (the slot's acquiredAt − waitedMs). */
  slotAskedMs: number;
  slotAcquiredMs: number;
  /** The worker's `backup started` line: pg_dump is started next. */
  backupStartedMs: number;
  /** The worker's `backup completed` line: artifact and manifest written. */
  backupCompletedMs: number;
  slotReleasedMs: number;
  /** The worker's `job completed` line: the job's other locks released. */
  jobCompletedMs: number;
  /** Job completed in BullMQ (finishedOn). */
  finishedMs: number;
  /** Which of the server's slots it held. */
  slot: string;
  bytes: number;
}

/** A nightly run of a discovery target: its scheduled `discover` job and the backups it queued. */
export interface TargetsPgkeepRun {
  maxConcurrentJobs: number;
  /** Scheduled time → the last backup job finished (ms). */
  wallMs: number;
  /** The discover job picked up / finished, ms after the scheduled time. */
  discoverStartedMs: number;
  discoverFinishedMs: number;
  /** CPU time of the worker process over the run (ms). */
  workerCpuMs: number;
  /** 1-minute load average when the run started. */
  load: number;
  jobs: TargetsJob[];
}

/** The shell loop: `pg_dump -Fc -Z0 db | zstd -3 -T2 > file` for each database, `lanes` at a time. */
export interface TargetsRawRun {
  lanes: number;
  wallMs: number;
  /** Each database's pipeline (ms), in database order. */
  perDatabaseMs: number[];
  bytes: number;
  load: number;
}

export interface TargetsSection extends SectionMeta {
  databases: {
    count: number;
    prefix: string;
    /** Sum of pg_database_size over the databases. */
    sizeBytes: number;
    /** Sum of `pg_dump -Fc -Z0` output bytes. */
    dumpBytes: number;
    rowsPerDatabase: string;
  };
  /** The worker's BACKUP_CONCURRENCY (one worker process). */
  backupConcurrency: number;
  raw: { serial: TargetsRawRun[]; twoLanes: TargetsRawRun[] };
  /**
   * `cap2MoreJobs`: maxConcurrentJobs 2 in a worker with `moreJobsConcurrency` jobs at once
   * (one more than the cap), a second pgkeep beside the first: not a target, it shows what
   * a job waiting for its slot changes.
   */
  pgkeep: {
    cap1: TargetsPgkeepRun[];
    cap2: TargetsPgkeepRun[];
    cap2MoreJobs?: TargetsPgkeepRun[];
  };
  moreJobsConcurrency?: number;
}

/** pgkeep's point-in-time restore through the API, as its job reports it. */
export interface PitrPgkeepRun {
  /** POST → the job finished (BullMQ's finishedOn) (ms). */
  totalMs: number;
  /** The job's own duration (ms). */
  durationMs: number;
  phases: { fetchMs: number; recoveryMs: number; dumpMs: number; restoreMs: number };
  downtimeMs: number;
  walFilesFetched: number;
  walBytesFetched: number;
  recoveredTo: string | null;
  /** ms after the POST at which each job phase was first seen (polls every 100 ms). */
  polledPhases: Record<string, number>;
  /** CPU time of the worker process over the run (ms). */
  workerCpuMs: number;
  /** 1-minute load average when the run started. */
  load: number;
}

/** The same restore by hand (bench/sections/pitr-raw.ts); each step's wall time (ms). */
export interface PitrRawRun {
  totalMs: number;
  steps: Record<string, number>;
  walFiles: number;
  walBytes: number;
  load?: number;
}

export interface PitrWrites {
  rows: number;
  updates: number;
  transactions: number;
  ms: number;
  /** WAL written meanwhile (pg_stat_wal's wal_bytes: records, not the zeros a switch skips). */
  walBytes: number;
}

export interface PitrSection extends SectionMeta {
  dataset: {
    database: string;
    scale: number;
    sizeBytes: number;
    counts: Record<string, number>;
    generatedMs: number | null;
  };
  /** postgresql.conf settings of the dedicated cluster over initdb's. */
  clusterSettings: Record<string, string>;
  switchWalSeconds: number;
  baseBackup: { ms: number; size: number; tarSize: number };
  /** The paced load and what the archive got meanwhile. */
  load: PitrWrites & {
    seconds: number;
    rowsPerSecond: number;
    updatesPerTick: number;
    tickMs: number;
    lateTicks: number;
    /** Catalog entries archived during the load: segments, their WAL bytes, stored bytes. */
    archived: { segments: number; walBytes: number; storedBytes: number };
    /** lagSeconds of GET /api/targets/:target/pitr at the end of the load. */
    lagSeconds: number | null;
  };
  /**
   * The unpaced writes up to `minutes` of the load's WAL, with a segment switch asked for every
   * `bytesPerSwitch` of WAL (the load's WAL in one switch interval).
   */
  more: PitrWrites & {
    minutes: number;
    targetWalBytes: number;
    bytesPerSwitch: number;
    switches: number;
    writers: number;
  };
  /** The restore's point in time and what the database held then. */
  pointInTime: string;
  rowsAtPoint: number;
  rowsAfterPoint: number;
  /**
   * Archived segments from the base backup's start to the one after the point in time (their
   * `walSize` and stored bytes), and the WAL written meanwhile (pg_stat_wal).
   */
  walUsed: { segments: number; walBytes: number; storedBytes: number; writtenBytes: number };
  /** `node -e 0` after the restores (ms, median of 5): paid once per WAL file by pgkeep. */
  nodeStartMs: number;
  pgkeep: PitrPgkeepRun[];
  raw: PitrRawRun[];
}
