import type { Config } from '@pgkeep/core';
import type { SessionSettings } from '@pgkeep/pg';

/**
 * Session settings of the pg_restore or psql that loads a restore's temporary database, and of
 * nothing else: no one but pgkeep uses that database until the swap, so the load may trade
 * what a live database could not afford to.
 *
 * - `synchronous_commit=off`: the load's commits (one per table, index and constraint for
 *   pg_restore) return without waiting for their WAL to reach disk. Durability: a crash before
 *   the swap may lose the end of the load, but then the temporary database is a scratch one,
 *   never swapped in, and the next start-up drops it. The swap transaction commits
 *   synchronously: `swapDatabases` sets `synchronous_commit` back on for it, whatever the
 *   server's or the role's default. A synchronous commit flushes the WAL up to its own commit
 *   record, which comes after every commit of the load (they all returned before the swap
 *   began), so once the swap has returned, all of the load is on disk with it, and a crash
 *   from then on brings back the restored database whole (test/restore-load-durability.int.test.ts
 *   crashes the server right after a restore to show it).
 * - `maintenance_work_mem` (RESTORE_MAINTENANCE_WORK_MEM): index builds sort in memory instead
 *   of in temporary files. Each pg_restore job has its own, so the load may use RESTORE_JOBS
 *   times it.
 * - `max_parallel_maintenance_workers` (RESTORE_PARALLEL_MAINTENANCE_WORKERS, 0 by default): how
 *   many workers one index build may add. pg_restore already runs RESTORE_JOBS builds at once;
 *   PostgreSQL would give each a worker per 32MB of maintenance_work_mem on top (up to the
 *   server's max_parallel_maintenance_workers, 2 by default), and those workers hand their
 *   sorted runs over in temporary files whatever the memory. On 2 cores with RESTORE_JOBS=2,
 *   the load took 0.91x the time of no settings with 0 workers against 1.04x with the server's 2,
 *   and wrote no temporary files against 141 MB (scale 0.3, medians of 3,
 *   bench/experiments/restore-load-settings.ts).
 */
export function temporaryDatabaseLoadSettings(
  config: Pick<Config, 'RESTORE_MAINTENANCE_WORK_MEM' | 'RESTORE_PARALLEL_MAINTENANCE_WORKERS'>,
): SessionSettings {
  const settings: Record<string, string> = {
    synchronous_commit: 'off',
    maintenance_work_mem: config.RESTORE_MAINTENANCE_WORK_MEM,
  };
  settings.max_parallel_maintenance_workers = String(config.RESTORE_PARALLEL_MAINTENANCE_WORKERS);
  return settings;
}
