import { AppError } from '@pgkeep/core';
import type { RunContext } from './engine-context.js';

export interface RestoreRequest {
  backupId: string;
  target: string;
  requestedAt: string;
}

function duration(ms: number): string {
  const seconds = Math.round(ms / 1000);
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7_200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3_600).toFixed(1)} h`;
}

/**
 * A restore swaps the backup in over whatever the target holds by then: asked for at T, it is
 * meant to discard what was written between the backup and about T, not hours more because its
 * worker died and the job came back (BullMQ re-runs a stalled job as soon as a worker is up
 * again, however late that is). So a run may begin its work, and may reach the swap, only
 * within `windowMs` of the request; otherwise it fails with RESTORE_INTERRUPTED, never retried,
 * and must be asked for again.
 *
 * The one exception: the first run of the job that started within the window. It has worked
 * without a break since it was asked for (waiting for the lock, loading a large database), so
 * its swap may come late, as any long restore's does. Any other run is a retry or a re-run
 * after a stall (its worker died mid-restore, possibly hours ago) and gets no such allowance:
 * that is simpler to reason about than guessing how long ago its predecessor stopped.
 *
 * Checked where a run begins its work (under its locks, after an earlier run's result was
 * looked for: a first run that completed is reported, not refused) and again just before the
 * swap. Times come from the API's clock (requestedAt) and the worker's: hosts are expected to
 * agree far better than the window's minutes.
 */
export function assertRestoreStillWanted(
  request: RestoreRequest,
  run: Pick<RunContext, 'startedAt' | 'rerun'>,
  windowMs: number,
  stage: 'start' | 'swap',
  now: number = Date.now(),
): void {
  const requestedAt = Date.parse(request.requestedAt);
  if (!Number.isFinite(requestedAt) || now - requestedAt <= windowMs) return;
  const startedAt = run.startedAt ?? now;
  const firstRunStartedPromptly = !run.rerun && startedAt - requestedAt <= windowMs;
  if (firstRunStartedPromptly) return;
  const why = run.rerun
    ? 'this run replaces one that stopped (its worker died or it failed)'
    : `it started ${duration(startedAt - requestedAt)} after the request`;
  throw new AppError(
    'RESTORE_INTERRUPTED',
    `the restore of backup ${request.backupId} into ${request.target} was asked for at ${request.requestedAt}, ${duration(now - requestedAt)} ago, more than RESTORE_RETRY_WINDOW_MS (${duration(windowMs)}), and ${why}: stopped ${stage === 'swap' ? 'before the swap' : 'before it began'}, ${request.target} is untouched. Ask for the restore again if it is still wanted.`,
  );
}
