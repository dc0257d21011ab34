import type { Config } from '@pgkeep/core';
import { type AdvisoryLocks, type HeldLock, lockResources } from '@pgkeep/pg';
import type { EngineContext, RunContext } from './engine-context.js';

/** The DESTRUCTIVE_CONCURRENCY slots: a destructive job holds one of them. */
export function destructiveSlots(config: Pick<Config, 'DESTRUCTIVE_CONCURRENCY'>): string[] {
  return Array.from({ length: config.DESTRUCTIVE_CONCURRENCY }, (_, index) =>
    lockResources.slot(lockResources.destructive, index),
  );
}

/** A server's maxConcurrentJobs slots: a dump or restore against it holds one of them. */
export function serverSlots(server: string, maxConcurrentJobs: number): string[] {
  return Array.from({ length: maxConcurrentJobs }, (_, index) =>
    lockResources.slot(lockResources.serverSlot(server), index),
  );
}

/**
 * Waits for one slot of the target's server. The wait shows as `waiting-for-slot`, so a job
 * held back by the cap is told apart from one held back by a lock.
 */
export async function takeServerSlot(engine: EngineContext, run: RunContext): Promise<HeldLock> {
  const { server, maxConcurrentJobs } = engine.targetInfo;
  run.onProgress?.({ phase: 'waiting-for-slot', percent: null, waitingFor: `server:${server}` });
  return engine.locks.acquireAny(serverSlots(server, maxConcurrentJobs), {
    timeoutMs: engine.config.LOCK_TIMEOUT_MS,
    signal: run.signal,
  });
}

/**
 * All of `resources` at once if every one is free right now, else none: what start-up sweeps
 * take to be sure that no job of that kind runs anywhere.
 */
export async function tryAcquireAll(
  locks: AdvisoryLocks,
  resources: string[],
): Promise<HeldLock[] | undefined> {
  const held: HeldLock[] = [];
  for (const resource of resources) {
    const lock = await locks.tryAcquire(resource, 'exclusive');
    if (!lock) {
      for (const taken of held.reverse()) await taken.release();
      return undefined;
    }
    held.push(lock);
  }
  return held;
}

export async function releaseAll(held: HeldLock[]): Promise<void> {
  for (const lock of [...held].reverse()) await lock.release();
}
