import { cancelJob, findJob, type JobLookup, type JobView } from '@pgkeep/queue';
import { FinishedJobCache } from './finished-job-cache.js';

/** How long a finished job's answer is served without Redis: a removed job 404s after it. */
export const FINISHED_JOB_TTL_MS = 5_000;
/** Finished jobs kept per API process (each answer is about 1 KB). */
export const FINISHED_JOBS_KEPT = 1_000;

/** Content type of the poll's answer, as Fastify sets it for a serialized object. */
export const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';

/**
 * `GET /api/jobs/:jobId` and its cancel. A poll of an unfinished job reads Redis once
 * (`findJob`); a finished job's answer is kept (see finished-job-cache.ts) already serialized.
 *
 * The answer is serialized with JSON.stringify rather than through the route's zod schema:
 * `findJob` builds the view itself, its keys in the schema's order, so the bytes are the ones
 * the schema would produce (job-poll-service.test.ts checks this) at less than half the cost.
 */
export class JobPollService {
  readonly #lookup: JobLookup;
  readonly #finished: FinishedJobCache<string>;

  constructor(
    lookup: JobLookup,
    options: { ttlMs?: number; maxEntries?: number; now?: () => number } = {},
  ) {
    this.#lookup = lookup;
    this.#finished = new FinishedJobCache({
      ttlMs: options.ttlMs ?? FINISHED_JOB_TTL_MS,
      maxEntries: options.maxEntries ?? FINISHED_JOBS_KEPT,
      ...(options.now ? { now: options.now } : {}),
    });
  }

  /** The 200 answer, `{"success":true,"data":<job view>}`, as JSON text. */
  async pollBody(jobId: string): Promise<string> {
    const cached = this.#finished.get(jobId);
    if (cached !== undefined) return cached;
    const view = await findJob(this.#lookup, jobId);
    const body = JSON.stringify({ success: true, data: view });
    if (view.state === 'completed' || view.state === 'failed') this.#finished.set(jobId, body);
    return body;
  }

  async cancel(jobId: string, requestedBy: string): Promise<JobView> {
    try {
      return await cancelJob(this.#lookup, jobId, requestedBy);
    } finally {
      // A job that finished while its cancel was being asked for gains the marker after it
      // finished: its kept answer (without the marker) goes, and the next poll reads Redis.
      this.#finished.delete(jobId);
    }
  }
}
