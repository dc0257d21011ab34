import { UnrecoverableError } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { failedForGood, isFinalFailure } from './final-failure.js';

const job = (attemptsMade: number, attempts?: number) => ({
  attemptsMade,
  opts: attempts === undefined ? {} : { attempts },
});

describe("failedForGood (BullMQ's failed event)", () => {
  it('is false while attempts remain for a retryable error', () => {
    expect(failedForGood(job(1, 3), new Error('[LOCK_TIMEOUT] waited too long'))).toBe(false);
    expect(failedForGood(job(2, 3), new Error('[LOCK_TIMEOUT] waited too long'))).toBe(false);
  });

  it('is true on the last attempt, for a job without retries, and for an unrecoverable error', () => {
    expect(failedForGood(job(3, 3), new Error('[LOCK_TIMEOUT] waited too long'))).toBe(true);
    expect(failedForGood(job(1), new Error('boom'))).toBe(true);
    expect(failedForGood(job(1, 3), new UnrecoverableError('[TABLE_NOT_FOUND] Gone'))).toBe(true);
  });
});

describe('isFinalFailure (inside the attempt, before BullMQ counts it)', () => {
  it('says the same as the failed event will', () => {
    // Third of three attempts fails: 2 failed before it, so 3 with it.
    expect(isFinalFailure(2 + 1, 3, false)).toBe(true);
    expect(isFinalFailure(1 + 1, 3, false)).toBe(false);
    expect(isFinalFailure(0 + 1, 3, true)).toBe(true);
    expect(isFinalFailure(0 + 1, undefined, false)).toBe(true);
  });
});
