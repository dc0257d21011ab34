import type { AdvisoryLocks, HeldLock, LockMode } from '@pgkeep/pg';

/** Locks one job takes, one after another, released together in reverse order. */
export class HeldLocks {
  private readonly held: HeldLock[] = [];

  constructor(
    private readonly locks: AdvisoryLocks,
    private readonly options: { timeoutMs: number; signal?: AbortSignal | undefined },
  ) {}

  async take(resource: string, mode: LockMode): Promise<HeldLock> {
    const lock = await this.locks.acquire(resource, mode, this.options);
    this.held.push(lock);
    return lock;
  }

  /** The first of `resources` to come free, exclusively (one slot of a cap). */
  async takeAny(resources: string[]): Promise<HeldLock> {
    const lock = await this.locks.acquireAny(resources, this.options);
    this.held.push(lock);
    return lock;
  }

  /** Aborted when the job is, or when any held lock's connection is lost. */
  signal(): AbortSignal {
    return AbortSignal.any(
      [this.options.signal, ...this.held.map((lock) => lock.lost)].filter(
        (signal): signal is AbortSignal => signal !== undefined,
      ),
    );
  }

  async releaseAll(): Promise<void> {
    while (this.held.length > 0) await this.held.pop()?.release();
  }
}
