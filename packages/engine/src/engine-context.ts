import type { Config, JobProgress, JobResult, Logger, TargetSettings } from '@pgkeep/core';
import type { AdvisoryLocks, PgTarget, ToolVersion } from '@pgkeep/pg';
import type { BackupStore, KeyRing } from '@pgkeep/storage';

/** What every job handler needs, built once per worker process. */
export interface EngineContext {
  config: Config;
  /** The catalog and every destination copies go to. */
  storage: BackupStore;
  /** Keys for encrypting new backups and reading old ones. */
  keyRing: KeyRing;
  locks: AdvisoryLocks;
  /** The database that is backed up: the job's target's connection. */
  target: PgTarget;
  /** The same server's maintenance database: scratch databases, swaps, drops. */
  maintenance: PgTarget;
  /** Which pgkeep target this is, its server, and its settings. */
  targetInfo: TargetInfo;
  logger: Logger;
  /** The pg_dump and pg_restore this worker runs, read once at start. */
  pgDump: ToolVersion;
  pgRestore: ToolVersion;
}

export interface TargetInfo {
  /** The target's name (`<server>/<database>` for a discovered one). */
  name: string;
  server: string;
  /** Dumps and restores at once against this server, across every worker. */
  maxConcurrentJobs: number;
  settings: TargetSettings;
}

/** Per-run: the job's id and who asked, its AbortSignal, a progress callback, its logger. */
export interface RunContext {
  jobId: string | null;
  signal?: AbortSignal | undefined;
  onProgress?: ((progress: JobProgress) => void) | undefined;
  logger: Logger;
  /**
   * The result an earlier run of this same job recorded, if one finished: a job whose worker
   * stalled can be handed out again while (or after) its first run completes.
   */
  earlierResult?: (() => Promise<unknown>) | undefined;
  /** When this run of the job began (epoch ms). */
  startedAt?: number | undefined;
  /** Another run of this same job began before this one: a retry, or a re-run after a stall. */
  rerun?: boolean | undefined;
  /**
   * Keeps a verify's verdict on its backup (health detail reads it), passed or failed; called
   * before a failed verify ends its job.
   */
  recordVerification?: ((result: JobResult<'verify'>) => Promise<void>) | undefined;
}
