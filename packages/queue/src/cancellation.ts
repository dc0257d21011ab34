import type { Redis } from 'ioredis';

/**
 * Cancelling a job that another process runs: the API leaves a marker (checked by a worker
 * before it starts the job) and publishes the id (heard by the worker running it, which aborts
 * the job's signal). Markers expire after a day.
 */
/** The marker's key; also read by `findJob`, in the same script as the job's state. */
export const cancelMarkerKey = (prefix: string, jobId: string) =>
  `${prefix}:pgkeep-cancel:${jobId}`;
export const cancelChannel = (prefix: string) => `${prefix}:pgkeep-cancel`;

export interface CancelRequest {
  jobId: string;
  requestedBy: string;
}

export async function requestCancel(
  redis: Redis,
  prefix: string,
  request: CancelRequest,
): Promise<void> {
  await redis.set(cancelMarkerKey(prefix, request.jobId), request.requestedBy, 'EX', 86_400);
  await redis.publish(cancelChannel(prefix), JSON.stringify(request));
}

/** Who asked to cancel this job, if anyone did. */
export async function cancelRequestedBy(
  redis: Redis,
  prefix: string,
  jobId: string,
): Promise<string | null> {
  return redis.get(cancelMarkerKey(prefix, jobId));
}

/** Calls `onCancel` for every cancellation published; `subscriber` becomes a subscriber connection. */
export async function listenForCancels(
  subscriber: Redis,
  prefix: string,
  onCancel: (request: CancelRequest) => void,
): Promise<void> {
  subscriber.on('message', (channel: string, message: string) => {
    if (channel !== cancelChannel(prefix)) return;
    try {
      const parsed = JSON.parse(message) as CancelRequest;
      if (typeof parsed.jobId === 'string') onCancel(parsed);
    } catch {
      // not ours
    }
  });
  await subscriber.subscribe(cancelChannel(prefix));
}

/**
 * Results of finished jobs, kept a week by job id: a job handed out again after a stall finds
 * that its first run already completed and does not redo a destructive step.
 */
const outcomeKey = (prefix: string, jobId: string) => `${prefix}:pgkeep-outcome:${jobId}`;

export async function recordOutcome(
  redis: Redis,
  prefix: string,
  jobId: string,
  result: unknown,
): Promise<void> {
  await redis.set(outcomeKey(prefix, jobId), JSON.stringify(result), 'EX', 7 * 86_400);
}

export async function recordedOutcome(
  redis: Redis,
  prefix: string,
  jobId: string,
): Promise<unknown> {
  const value = await redis.get(outcomeKey(prefix, jobId));
  return value === null ? undefined : (JSON.parse(value) as unknown);
}
