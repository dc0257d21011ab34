import type { Job } from 'bullmq';
import { UnrecoverableError } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { isFinalFailure } from './job-notifications.js';

const job = (attemptsMade: number, attempts?: number) =>
  ({ attemptsMade, opts: attempts === undefined ? {} : { attempts } }) as unknown as Job;

describe('isFinalFailure', () => {
  it('is false while attempts remain for a retryable error', () => {
    expect(isFinalFailure(job(1, 3), new Error('[LOCK_TIMEOUT] waited too long'))).toBe(false);
    expect(isFinalFailure(job(2, 3), new Error('[LOCK_TIMEOUT] waited too long'))).toBe(false);
  });

  it('is true on the last attempt, for a job without retries, and for an unrecoverable error', () => {
    expect(isFinalFailure(job(3, 3), new Error('[LOCK_TIMEOUT] waited too long'))).toBe(true);
    expect(isFinalFailure(job(1), new Error('boom'))).toBe(true);
    expect(isFinalFailure(job(1, 3), new UnrecoverableError('[TABLE_NOT_FOUND] Gone'))).toBe(true);
  });
});
