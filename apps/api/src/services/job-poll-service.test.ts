import { AppError } from '@pgkeep/core';
import type { JobLookup, JobView } from '@pgkeep/queue';
import { serializerCompiler } from 'fastify-type-provider-zod';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { jobViewSchema, okEnvelope } from '../schemas.js';
import { FinishedJobCache } from './finished-job-cache.js';

const queue = vi.hoisted(() => ({ findJob: vi.fn(), cancelJob: vi.fn() }));
vi.mock('@pgkeep/queue', () => queue);

const { FINISHED_JOB_TTL_MS, JobPollService } = await import('./job-poll-service.js');

const lookup = {} as JobLookup;

function view(overrides: Partial<JobView> = {}): JobView {
  return {
    jobId: 'backup-1',
    name: 'backup',
    state: 'running',
    progress: { phase: 'dumping', percent: 40, bytesWritten: 1234 },
    result: null,
    error: null,
    cancelRequestedBy: null,
    lastError: null,
    attemptsMade: 0,
    requestedBy: 'admin@example.com',
    target: 'default',
    createdAt: '2026-01-22T16:30:00.000Z',
    startedAt: '2026-01-22T16:30:00.100Z',
    finishedAt: null,
    ...overrides,
  };
}

const completed = view({
  state: 'completed',
  progress: { phase: 'done', percent: 100 },
  result: { backupId: '2026-01-22T16-30-00-000Z-0123456789ab', size: 42, tables: ['User'] },
  attemptsMade: 1,
  finishedAt: '2026-01-22T16:30:07.000Z',
});
const failed = view({
  state: 'failed',
  progress: 0,
  error: { code: 'PG_DUMP_FAILED', message: 'pg_dump exited with code 1\nstderr "tail"' },
  lastError: { code: 'PG_DUMP_FAILED', message: 'pg_dump exited with code 1\nstderr "tail"' },
  attemptsMade: 1,
  finishedAt: '2026-01-22T16:30:07.000Z',
});
const queued = view({ state: 'queued', progress: 0, startedAt: null, cancelRequestedBy: 'ops' });
const verifyError = {
  code: 'VERIFY_FAILED',
  message: 'backup b failed verification: archive-read: local: pg_restore exited with code 1',
  details: {
    backupId: 'b',
    ok: false,
    checks: [
      { name: 'sha256', ok: true, detail: 'local: 42 bytes, sha256 matches the manifest' },
      { name: 'archive-read', ok: false, detail: 'local: pg_restore exited with code 1' },
    ],
    durationMs: 35,
  },
};
const failedVerify = view({
  jobId: 'verify-1',
  name: 'verify',
  state: 'failed',
  progress: { phase: 'reading', percent: null },
  error: verifyError,
  lastError: verifyError,
  attemptsMade: 1,
  finishedAt: '2026-01-22T16:30:07.000Z',
});

beforeEach(() => {
  queue.findJob.mockReset();
  queue.cancelJob.mockReset();
});

describe('the poll answer', () => {
  // What the route sent before: the envelope through its zod response schema.
  const schemaSerializer = serializerCompiler({
    schema: okEnvelope(jobViewSchema),
    method: 'GET',
    url: '/api/jobs/:jobId',
    httpStatus: '200',
  } as never) as (data: unknown) => string;

  it.each([
    ['running', view()],
    ['queued', queued],
    ['completed', completed],
    ['failed', failed],
    ['failed verify', failedVerify],
  ])('of a %s job is byte for byte what the response schema writes', async (_state, job) => {
    queue.findJob.mockResolvedValueOnce(job);
    const body = await new JobPollService(lookup).pollBody(job.jobId);
    expect(body).toBe(schemaSerializer({ success: true, data: job }));
  });
});

describe('polls of finished jobs', () => {
  it.each([
    ['completed', completed],
    ['failed', failed],
  ])('a %s job is read from Redis once, then answered from memory', async (_state, job) => {
    queue.findJob.mockResolvedValue(job);
    const jobs = new JobPollService(lookup);
    const first = await jobs.pollBody(job.jobId);
    expect(await jobs.pollBody(job.jobId)).toBe(first);
    expect(await jobs.pollBody(job.jobId)).toBe(first);
    expect(queue.findJob).toHaveBeenCalledTimes(1);
  });

  it.each([
    ['running', view()],
    ['queued', queued],
  ])('a %s job is read from Redis on every poll', async (_state, job) => {
    queue.findJob.mockResolvedValue(job);
    const jobs = new JobPollService(lookup);
    await jobs.pollBody(job.jobId);
    await jobs.pollBody(job.jobId);
    expect(queue.findJob).toHaveBeenCalledTimes(2);
  });

  it('a finished job that BullMQ removed answers 404 once the TTL has passed', async () => {
    let now = 1_000_000;
    const jobs = new JobPollService(lookup, { now: () => now });
    queue.findJob.mockResolvedValueOnce(completed);
    await jobs.pollBody(completed.jobId);
    queue.findJob.mockRejectedValue(new AppError('JOB_NOT_FOUND', 'job backup-1 not found'));
    now += FINISHED_JOB_TTL_MS - 1;
    await expect(jobs.pollBody(completed.jobId)).resolves.toContain('"state":"completed"');
    now += 1;
    await expect(jobs.pollBody(completed.jobId)).rejects.toMatchObject({ code: 'JOB_NOT_FOUND' });
  });

  it('a cancel request drops the kept answer, so the next poll reads Redis', async () => {
    const jobs = new JobPollService(lookup);
    queue.findJob.mockResolvedValueOnce(completed);
    await jobs.pollBody(completed.jobId);
    queue.cancelJob.mockResolvedValueOnce({ ...view(), cancelRequestedBy: 'ops' });
    await jobs.cancel(completed.jobId, 'ops');
    queue.findJob.mockResolvedValueOnce({ ...completed, cancelRequestedBy: 'ops' });
    expect(await jobs.pollBody(completed.jobId)).toContain('"cancelRequestedBy":"ops"');
    expect(queue.findJob).toHaveBeenCalledTimes(2);
  });

  it('errors are never kept', async () => {
    const jobs = new JobPollService(lookup);
    queue.findJob.mockRejectedValueOnce(new AppError('QUEUE_UNAVAILABLE', 'down'));
    await expect(jobs.pollBody('backup-1')).rejects.toMatchObject({ code: 'QUEUE_UNAVAILABLE' });
    queue.findJob.mockResolvedValueOnce(completed);
    expect(await jobs.pollBody('backup-1')).toContain('"state":"completed"');
  });
});

describe('FinishedJobCache', () => {
  it('keeps at most maxEntries, dropping the one read least recently', () => {
    const cache = new FinishedJobCache<string>({ maxEntries: 2, ttlMs: 60_000 });
    cache.set('a', 'A');
    cache.set('b', 'B');
    expect(cache.get('a')).toBe('A');
    cache.set('c', 'C');
    expect(cache.size).toBe(2);
    expect(cache.get('b')).toBeUndefined();
    expect(cache.get('a')).toBe('A');
    expect(cache.get('c')).toBe('C');
  });

  it('counts the TTL from the read from Redis, not from the last hit', () => {
    let now = 0;
    const cache = new FinishedJobCache<string>({ maxEntries: 10, ttlMs: 1_000, now: () => now });
    cache.set('a', 'A');
    for (now = 0; now < 1_000; now += 100) expect(cache.get('a')).toBe('A');
    now = 1_000;
    expect(cache.get('a')).toBeUndefined();
    expect(cache.size).toBe(0);
  });
});
