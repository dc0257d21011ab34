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

export interface ScaleResults {
  scale: number;
  machine: MachineInfo;
  dataset: {
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

export interface Variant {
  label: string;
  runs: TimedRun[];
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
  byCommandMb: RssPeaks['byCommandMb'];
}

export interface BackupSection extends SectionMeta {
  /** `zstdChecked` (added later): absent from older results files. */
  variants: Record<'pgkeep' | 'zstd' | 'fc' | 'plain', Variant> & { zstdChecked?: Variant };
  memory: WorkerMemory;
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
}
