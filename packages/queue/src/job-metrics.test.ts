import { describe, expect, it } from 'vitest';
import {
  finalOutcomeOfFailure,
  type HashIncrement,
  histogramBuckets,
  jobOutcomeIncrements,
  parseJobMetrics,
} from './job-metrics.js';

const manifest = {
  manifestVersion: 1,
  id: '2026-01-22T16-30-00-000Z-0123456789ab',
  filename: 'backup-2026-01-22T16-30-00-000Z-0123456789ab.dump.zst',
  size: 300 * 1024,
  sha256: 'a'.repeat(64),
  createdAt: '2026-01-22T16:30:00.000Z',
  completedAt: '2026-01-22T16:30:07.000Z',
  durationMs: 7_000,
  type: 'manual',
  status: 'completed',
  format: 'custom',
  compression: 'zstd',
  tables: null,
  database: 'app',
  serverVersion: '15.4',
  pgDumpVersion: '15.4',
  rowCounts: {},
  requestedBy: 'admin',
  label: null,
  jobId: 'backup-1',
};
const lock = {
  waitedMs: 2_500,
  acquiredAt: '2026-01-22T16:30:00.000Z',
  releasedAt: '2026-01-22T16:30:03.000Z',
};

/** Applies increments to a hash the way Redis would, so reading them back can be checked. */
function apply(hash: Record<string, string>, increments: HashIncrement[]) {
  for (const { field, by } of increments) hash[field] = String(Number(hash[field] ?? 0) + by);
  return hash;
}

describe('job outcomes', () => {
  it('counts a verify that found the backup bad as failed: it fails for good as VERIFY_FAILED', () => {
    expect(
      finalOutcomeOfFailure(
        { attemptsMade: 1, opts: { attempts: 3 } },
        {
          name: 'UnrecoverableError',
          message: '[VERIFY_FAILED] backup b failed verification: sha256: size 1 of 2\n\u001e{}',
        },
      ),
    ).toBe('failed');
  });

  it('counts a failure only when no retry follows, and a cancel as cancelled', () => {
    const attempt = (attemptsMade: number, attempts: number) => ({
      attemptsMade,
      opts: { attempts },
    });
    const retryable = { name: 'Error', message: '[LOCK_TIMEOUT] waited too long' };
    const unrecoverable = { name: 'UnrecoverableError', message: '[PG_DUMP_FAILED] exit 1' };
    expect(finalOutcomeOfFailure(attempt(1, 3), retryable)).toBeNull();
    expect(finalOutcomeOfFailure(attempt(3, 3), retryable)).toBe('failed');
    expect(finalOutcomeOfFailure(attempt(1, 3), unrecoverable)).toBe('failed');
    expect(
      finalOutcomeOfFailure(attempt(1, 3), {
        name: 'UnrecoverableError',
        message: '[JOB_CANCELLED] cancelled by admin',
      }),
    ).toBe('cancelled');
    // A job failed by BullMQ for stalling too often carries no code: a failure.
    expect(
      finalOutcomeOfFailure(attempt(2, 3), {
        name: 'UnrecoverableError',
        message: 'job stalled more than allowable limit',
      }),
    ).toBe('failed');
  });
});

describe('increments and reading them back', () => {
  it('a completed backup adds its outcome and one observation to each backup histogram', () => {
    const hash = apply({}, jobOutcomeIncrements('backup', 'completed', manifest));
    const snapshot = parseJobMetrics(hash);
    expect(snapshot.jobs.backup).toEqual({ completed: 1, failed: 0, cancelled: 0 });
    expect(snapshot.jobs.restore).toEqual({ completed: 0, failed: 0, cancelled: 0 });
    const duration = snapshot.backupDurationSeconds;
    expect(duration.count).toBe(1);
    expect(duration.sum).toBe(7);
    // Cumulative: 7 s is above the 1 and 5 s buckets, inside 15 s and every one after.
    expect(duration.buckets.map((bucket) => bucket.count)).toEqual([
      0,
      0,
      ...histogramBuckets.backup_duration_seconds.slice(2).map(() => 1),
      1,
    ]);
    expect(duration.buckets.at(-1)?.le).toBe(Number.POSITIVE_INFINITY);
    const size = snapshot.backupSizeBytes;
    expect(size).toMatchObject({ count: 1, sum: 300 * 1024 });
    expect(size.buckets.find((bucket) => bucket.le === 256 * 1024)?.count).toBe(0);
    expect(size.buckets.find((bucket) => bucket.le === 1024 * 1024)?.count).toBe(1);
    expect(snapshot.lockWaitSeconds.restore?.count).toBe(0);
  });

  it('a failed backup adds only its outcome; destructive jobs add their lock wait by job', () => {
    const hash = apply({}, jobOutcomeIncrements('backup', 'failed'));
    apply(hash, jobOutcomeIncrements('restore', 'completed', { lock, durationMs: 10 }));
    apply(hash, jobOutcomeIncrements('delete', 'completed', { lock: { ...lock, waitedMs: 0 } }));
    const snapshot = parseJobMetrics(hash);
    expect(snapshot.jobs.backup).toEqual({ completed: 0, failed: 1, cancelled: 0 });
    expect(snapshot.backupDurationSeconds.count).toBe(0);
    expect(snapshot.lockWaitSeconds.restore).toMatchObject({ count: 1, sum: 2.5 });
    expect(snapshot.lockWaitSeconds.restore?.buckets.find((b) => b.le === 1)?.count).toBe(0);
    expect(snapshot.lockWaitSeconds.restore?.buckets.find((b) => b.le === 5)?.count).toBe(1);
    expect(snapshot.lockWaitSeconds.delete).toMatchObject({ count: 1, sum: 0 });
    expect(snapshot.lockWaitSeconds.delete?.buckets[0]?.count).toBe(1);
    expect(Object.keys(snapshot.lockWaitSeconds).sort()).toEqual([
      'cleanup',
      'delete',
      'pitr-cleanup',
      'pitr-restore',
      'restore',
    ]);
  });

  it('reads the notifier’s counters by channel, and ignores fields it does not know', () => {
    const snapshot = parseJobMetrics({
      'notifications_sent_total:webhook': '3',
      'notifications_failed_total:webhook': '1',
      'notifications_failed_total:email': '2',
      'jobs_total:backup:completed': 'not a number',
      'something-else': '7',
    });
    expect(snapshot.notifications).toEqual([
      { channel: 'email', sent: 0, failed: 2 },
      { channel: 'webhook', sent: 3, failed: 1 },
    ]);
    expect(snapshot.jobs.backup.completed).toBe(0);
  });
});
