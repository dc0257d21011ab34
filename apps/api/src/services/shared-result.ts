/**
 * `work` run once for many callers: those who ask while it runs share its promise, and those
 * who ask within `ttlMs` after it settled get the same result. A failure is not kept.
 * (The public health check: a storm of probes does one check, not one per probe.)
 */
export function sharedResult<T>(
  ttlMs: number,
  work: () => Promise<T>,
  now: () => number = Date.now,
): () => Promise<T> {
  let current: { promise: Promise<T>; until: number } | undefined;
  return () => {
    if (current && now() < current.until) return current.promise;
    const entry = { promise: work(), until: Number.POSITIVE_INFINITY };
    current = entry;
    entry.promise.then(
      () => {
        entry.until = now() + ttlMs;
      },
      () => {
        if (current === entry) current = undefined;
      },
    );
    return entry.promise;
  };
}
