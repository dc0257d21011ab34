/**
 * The answers to polls of finished (completed or failed) jobs, kept in the API process so
 * that polling a finished job needs no Redis round trip.
 *
 * A finished job no longer changes: its state, result, error, progress and timestamps are
 * final, and nothing in pgkeep moves it back (the board is read-only, the API cancels only
 * unfinished jobs). What can still happen is that BullMQ removes it (`JOB_KEEP_COMPLETED` /
 * `JOB_KEEP_FAILED`, or Redis was flushed): an entry is therefore served for at most `ttlMs`
 * after it was read from Redis, never refreshed by hits, so a removed job answers 404 again
 * within `ttlMs`. At most `maxEntries` jobs are kept, the least recently read going first.
 * Each API process has its own cache; unfinished jobs are never stored.
 */
export class FinishedJobCache<T> {
  readonly #entries = new Map<string, { value: T; expiresAt: number }>();
  readonly #maxEntries: number;
  readonly #ttlMs: number;
  readonly #now: () => number;

  constructor(options: { maxEntries: number; ttlMs: number; now?: () => number }) {
    this.#maxEntries = options.maxEntries;
    this.#ttlMs = options.ttlMs;
    this.#now = options.now ?? Date.now;
  }

  get(jobId: string): T | undefined {
    const entry = this.#entries.get(jobId);
    if (entry === undefined) return undefined;
    if (this.#now() >= entry.expiresAt) {
      this.#entries.delete(jobId);
      return undefined;
    }
    // Most recently read last, so eviction takes the job nobody polls any more.
    this.#entries.delete(jobId);
    this.#entries.set(jobId, entry);
    return entry.value;
  }

  set(jobId: string, value: T): void {
    this.#entries.delete(jobId);
    if (this.#entries.size >= this.#maxEntries) {
      const oldest = this.#entries.keys().next();
      if (!oldest.done) this.#entries.delete(oldest.value);
    }
    this.#entries.set(jobId, { value, expiresAt: this.#now() + this.#ttlMs });
  }

  delete(jobId: string): void {
    this.#entries.delete(jobId);
  }

  get size(): number {
    return this.#entries.size;
  }
}
