import {
  AppError,
  type Config,
  decodeJobError,
  type JobError,
  type JobName,
  type JobPayloadInput,
  jobCatalog,
  jobNameOfId,
  newJobId,
  type QueueName,
  queueNames,
} from '@pgkeep/core';
import { type JobsOptions, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { requestCancel } from './cancellation.js';
import { type JobSnapshot, readJobSnapshot } from './job-snapshot.js';

export type PgkeepQueues = Record<QueueName, Queue>;

export function openQueues(
  connection: Redis,
  prefix: string,
  options: { onError: (error: Error) => void },
): PgkeepQueues {
  const open = (name: QueueName) => {
    const queue = new Queue(name, { connection, prefix });
    queue.on('error', options.onError);
    return queue;
  };
  return { backups: open(queueNames.backups), maintenance: open(queueNames.maintenance) };
}

export async function closeQueues(queues: PgkeepQueues): Promise<void> {
  await Promise.all(Object.values(queues).map((queue) => queue.close()));
}

export function jobOptions(name: JobName, config: Config): JobsOptions {
  const keep = {
    removeOnComplete: { count: config.JOB_KEEP_COMPLETED },
    removeOnFail: { count: config.JOB_KEEP_FAILED },
  };
  const { attempts, backoffMs } = jobCatalog[name].retry;
  return {
    ...keep,
    attempts: typeof attempts === 'number' ? attempts : config[attempts],
    backoff: { type: 'exponential', delay: backoffMs },
  };
}

/**
 * A connection that is still opening (just after start, or while it reconnects) gets a moment
 * to become ready; a Redis that stays down is a 503 after it, never a request that hangs.
 */
async function connectionReady(queue: Queue, ms = 2_000): Promise<void> {
  const connection = queue.opts.connection as unknown as Redis;
  if (typeof connection.status !== 'string' || connection.status === 'ready') return;
  const ready = await new Promise<boolean>((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      connection.off('ready', onReady);
      resolve(ok);
    };
    const onReady = () => done(true);
    const timer = setTimeout(() => done(false), ms);
    connection.once('ready', onReady);
  });
  if (!ready)
    throw new AppError('QUEUE_UNAVAILABLE', 'the job queue is not reachable', { retryable: true });
}

/** Validates the payload against the catalog and adds the job; 503 when Redis is down. */
export async function enqueue<N extends JobName>(
  queues: PgkeepQueues,
  config: Config,
  name: N,
  payload: JobPayloadInput<N>,
): Promise<string> {
  return enqueueWithId(queues, config, name, payload, newJobId(name));
}

/**
 * `enqueue` under a given id: BullMQ adds nothing when a job of that id exists already, so the
 * same id queued twice is one job.
 */
export async function enqueueWithId(
  queues: PgkeepQueues,
  config: Config,
  name: JobName,
  payload: unknown,
  jobId: string,
  /** BullMQ's priority (1 is first); jobs without one are taken before any that has one. */
  priority?: number,
): Promise<string> {
  const definition = jobCatalog[name];
  const data = definition.payload.parse(payload);
  await connectionReady(queues[definition.queue]);
  try {
    await queues[definition.queue].add(name, data, {
      ...jobOptions(name, config),
      jobId,
      ...(priority !== undefined ? { priority } : {}),
    });
  } catch (error) {
    throw new AppError('QUEUE_UNAVAILABLE', 'the job queue is not reachable', {
      retryable: true,
      cause: error,
    });
  }
  return jobId;
}

export type JobState = 'queued' | 'running' | 'completed' | 'failed';

export interface JobView {
  jobId: string;
  name: JobName;
  state: JobState;
  progress: unknown;
  result: unknown;
  /** `details` when the error has them: a failed verify's checks, for one. */
  error: JobError | null;
  /** Set once someone asked to cancel the job; a running job stops, a queued one never starts. */
  cancelRequestedBy: string | null;
  /** The error of the latest failed attempt, also while a retry waits its turn. */
  lastError: JobError | null;
  attemptsMade: number;
  requestedBy: string | null;
  /** The target the job is for (`default` for jobs that name none). */
  target: string;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

function stateOf(bullState: string): JobState {
  if (bullState === 'active') return 'running';
  if (bullState === 'completed') return 'completed';
  if (bullState === 'failed') return 'failed';
  // waiting, delayed (a retry's backoff), prioritized, waiting-children: not started yet.
  return 'queued';
}

const iso = (ms: number | undefined) => (ms ? new Date(ms).toISOString() : null);

export interface JobLookup {
  queues: PgkeepQueues;
  redis: Redis;
  prefix: string;
}

export async function findJob(
  { queues, redis, prefix }: JobLookup,
  jobId: string,
): Promise<JobView> {
  const name = jobNameOfId(jobId);
  if (!name) throw new AppError('INVALID_JOB_ID', 'invalid job id');
  const queue = queues[jobCatalog[name].queue];
  await connectionReady(queue);
  let job: JobSnapshot | undefined;
  try {
    // One round trip per poll: the state, the job and its cancel marker from one script.
    job = await readJobSnapshot(redis, queue, prefix, jobId);
  } catch (error) {
    throw new AppError('QUEUE_UNAVAILABLE', 'the job queue is not reachable', { cause: error });
  }
  if (!job) throw new AppError('JOB_NOT_FOUND', `job ${jobId} not found`);
  const state = stateOf(job.bullState);
  return {
    jobId,
    name,
    state,
    progress: job.progress ?? null,
    result: state === 'completed' ? (job.returnvalue ?? null) : null,
    error: state === 'failed' && job.failedReason ? decodeJobError(job.failedReason) : null,
    cancelRequestedBy: job.cancelRequestedBy,
    lastError: job.failedReason ? decodeJobError(job.failedReason) : null,
    attemptsMade: job.attemptsMade,
    requestedBy: typeof job.data.requestedBy === 'string' ? job.data.requestedBy : null,
    target: typeof job.data.targetName === 'string' ? job.data.targetName : 'default',
    createdAt: iso(job.timestamp) ?? new Date(0).toISOString(),
    startedAt: iso(job.processedOn),
    finishedAt: iso(job.finishedOn),
  };
}

/**
 * Asks for a job to stop: a running job is aborted by its worker (a restore then leaves the
 * target untouched), a queued one fails as JOB_CANCELLED when a worker takes it. A finished
 * job cannot be cancelled.
 */
export async function cancelJob(
  lookup: JobLookup,
  jobId: string,
  requestedBy: string,
): Promise<JobView> {
  const view = await findJob(lookup, jobId);
  if (view.state === 'completed' || view.state === 'failed') {
    throw new AppError('JOB_NOT_CANCELLABLE', `job ${jobId} has already ${view.state}`);
  }
  try {
    await requestCancel(lookup.redis, lookup.prefix, { jobId, requestedBy });
    // A retry waiting out its backoff is brought forward, so it fails as cancelled now.
    const job = await lookup.queues[jobCatalog[view.name].queue].getJob(jobId);
    if (job && (await job.getState()) === 'delayed') await job.promote().catch(() => {});
  } catch (error) {
    throw new AppError('QUEUE_UNAVAILABLE', 'the job queue is not reachable', { cause: error });
  }
  return { ...view, cancelRequestedBy: requestedBy };
}
