import { randomBytes } from 'node:crypto';
import { newJobId, queueNames } from '@pgkeep/core';
import { type Job, type Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { deleteRedisKeys } from '../../../test/support/test-env.js';
import { cancelRequestedBy, requestCancel } from './cancellation.js';
import { readJobSnapshot } from './job-snapshot.js';
import { closeQueues, findJob, openQueues, type PgkeepQueues } from './queues.js';

/**
 * findJob reads a job in one Lua script instead of BullMQ's getJobState + getJob + a GET. The
 * script copies BullMQ's state checks and decodes BullMQ's job hash itself, so here it is held
 * against BullMQ's own answers for a job in every state a poll can meet.
 */

let redis: Redis;
let workerConnection: Redis;
let prefix: string;
let queues: PgkeepQueues;
let queue: Queue;
let worker: Worker;
const token = 'job-snapshot-test';

beforeAll(async () => {
  redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: 1 });
  workerConnection = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
  prefix = `pgkeep-t-snapshot-${randomBytes(4).toString('hex')}`;
  queues = openQueues(redis, prefix, { onError: () => {} });
  queue = queues.backups;
  // No processor: the test moves jobs itself, so each one stays in the state it is put in.
  worker = new Worker(queueNames.backups, null, {
    connection: workerConnection,
    prefix,
    autorun: false,
  });
  worker.on('error', () => {});
});

afterAll(async () => {
  await worker?.close();
  if (queues) await closeQueues(queues);
  redis?.disconnect();
  workerConnection?.disconnect();
  // The queues' keys and the cancel marker (which would otherwise stay a day).
  if (prefix) await deleteRedisKeys(inject('redisUrl'), prefix);
});

beforeEach(async () => {
  // Each test takes the job it added: nothing a failed test left behind may be in the way.
  await queue.drain(true);
});

const payload = { requestedBy: 'admin@example.com', label: 'snapshot test' };

async function add(options: { delay?: number; priority?: number } = {}): Promise<string> {
  const jobId = newJobId('backup');
  await queue.add('backup', payload, { jobId, ...options });
  return jobId;
}

/** The next waiting job, moved to active as a worker would take it. */
async function take(): Promise<Job> {
  const job = await worker.getNextJob(token, { block: false });
  if (!job?.id) throw new Error('no job to take');
  return job;
}

/** What the poll read before the script: BullMQ's getJobState, getJob and the marker. */
async function bullmqAnswer(jobId: string) {
  const [state, job, marker] = await Promise.all([
    queue.getJobState(jobId),
    queue.getJob(jobId),
    cancelRequestedBy(redis, prefix, jobId),
  ]);
  if (!job || state === 'unknown') return undefined;
  return {
    bullState: state,
    data: job.data,
    progress: job.progress,
    returnvalue: job.returnvalue,
    failedReason: job.failedReason,
    attemptsMade: job.attemptsMade,
    timestamp: job.timestamp,
    processedOn: job.processedOn,
    finishedOn: job.finishedOn,
    cancelRequestedBy: marker,
  };
}

async function expectSameAsBullmq(jobId: string, bullState: string) {
  const snapshot = await readJobSnapshot(redis, queue, prefix, jobId);
  expect(snapshot?.bullState).toBe(bullState);
  expect(snapshot).toEqual(await bullmqAnswer(jobId));
}

describe('readJobSnapshot agrees with BullMQ', () => {
  it('for a waiting job', async () => {
    const jobId = await add();
    await expectSameAsBullmq(jobId, 'waiting');
    expect((await findJob({ queues, redis, prefix }, jobId)).state).toBe('queued');
  });

  it('for a delayed job (a retry waiting out its backoff)', async () => {
    const jobId = await add({ delay: 3_600_000 });
    await expectSameAsBullmq(jobId, 'delayed');
    expect((await findJob({ queues, redis, prefix }, jobId)).state).toBe('queued');
  });

  it('for a prioritized job', async () => {
    const jobId = await add({ priority: 5 });
    await expectSameAsBullmq(jobId, 'prioritized');
    expect((await findJob({ queues, redis, prefix }, jobId)).state).toBe('queued');
  });

  it('for a running job with progress and a cancel request', async () => {
    const jobId = await add();
    const job = await take();
    expect(job.id).toBe(jobId);
    await job.updateProgress({ phase: 'dumping', percent: 40, bytesWritten: 1234 });
    await requestCancel(redis, prefix, { jobId, requestedBy: 'ops@example.com' });
    await expectSameAsBullmq(jobId, 'active');
    const view = await findJob({ queues, redis, prefix }, jobId);
    expect(view).toMatchObject({
      state: 'running',
      progress: { phase: 'dumping', percent: 40, bytesWritten: 1234 },
      cancelRequestedBy: 'ops@example.com',
      requestedBy: 'admin@example.com',
      finishedAt: null,
    });
    expect(view.startedAt).not.toBeNull();
    await job.moveToFailed(new Error('[JOB_CANCELLED] cancelled'), token, false);
  });

  it('for a completed job with its result', async () => {
    const jobId = await add();
    const job = await take();
    await job.updateProgress({ phase: 'done', percent: 100 });
    await job.moveToCompleted({ backupId: 'b-1', size: 42, tables: null }, token, false);
    await expectSameAsBullmq(jobId, 'completed');
    expect(await findJob({ queues, redis, prefix }, jobId)).toMatchObject({
      state: 'completed',
      result: { backupId: 'b-1', size: 42, tables: null },
      error: null,
      lastError: null,
      attemptsMade: 1,
    });
  });

  it('for a failed job with its error', async () => {
    const jobId = await add();
    const job = await take();
    await job.moveToFailed(new Error('[PG_DUMP_FAILED] pg_dump exited with code 1'), token, false);
    await expectSameAsBullmq(jobId, 'failed');
    const view = await findJob({ queues, redis, prefix }, jobId);
    expect(view).toMatchObject({
      state: 'failed',
      progress: 0,
      result: null,
      error: { code: 'PG_DUMP_FAILED', message: 'pg_dump exited with code 1' },
      attemptsMade: 1,
    });
    expect(view.finishedAt).not.toBeNull();
  });

  it('for a job that does not exist, or no longer does', async () => {
    const missing = newJobId('backup');
    expect(await readJobSnapshot(redis, queue, prefix, missing)).toBeUndefined();
    await expect(findJob({ queues, redis, prefix }, missing)).rejects.toMatchObject({
      code: 'JOB_NOT_FOUND',
    });
    const removed = await add();
    await queue.remove(removed);
    expect(await readJobSnapshot(redis, queue, prefix, removed)).toBeUndefined();
  });
});
