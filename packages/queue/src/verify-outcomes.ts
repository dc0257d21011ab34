import type { JobResult } from '@pgkeep/core';
import type { Redis } from 'ioredis';

/**
 * The last verify of each backup, for health detail: one small Redis hash per target, one
 * field per backup id, written by the worker when a verify ends (passed or failed) and read by
 * the API in one HMGET. Job history may be trimmed long before a backup goes; this stays.
 */

/** Until targets are named, the one database a deployment backs up. */
export const defaultVerifyTarget = 'default';

export const verifyOutcomesKey = (prefix: string, target = defaultVerifyTarget) =>
  `${prefix}:pgkeep-verify:${target}`;

/** Backups kept in the hash: ids sort by time, the oldest go first. */
const KEPT_OUTCOMES = 1_000;

export interface VerifyOutcome {
  backupId: string;
  ok: boolean;
  verifiedAt: string;
  jobId: string | null;
  /** The checks that failed, with their reasons (empty when ok). */
  failedChecks: { name: string; detail: string }[];
}

export function verifyOutcomeOf(
  result: JobResult<'verify'>,
  jobId: string | null,
  now: Date = new Date(),
): VerifyOutcome {
  return {
    backupId: result.backupId,
    ok: result.ok,
    verifiedAt: now.toISOString(),
    jobId,
    failedChecks: result.checks
      .filter((check) => !check.ok)
      .map(({ name, detail }) => ({ name, detail })),
  };
}

export async function recordVerifyOutcome(
  redis: Redis,
  prefix: string,
  outcome: VerifyOutcome,
  target = defaultVerifyTarget,
): Promise<void> {
  const key = verifyOutcomesKey(prefix, target);
  await redis.hset(key, outcome.backupId, JSON.stringify(outcome));
  if ((await redis.hlen(key)) <= KEPT_OUTCOMES) return;
  const ids = (await redis.hkeys(key)).sort();
  const oldest = ids.slice(0, ids.length - KEPT_OUTCOMES);
  if (oldest.length > 0) await redis.hdel(key, ...oldest);
}

function parseOutcome(text: string | null): VerifyOutcome | undefined {
  if (text === null) return undefined;
  try {
    const value = JSON.parse(text) as VerifyOutcome;
    return typeof value?.ok === 'boolean' && typeof value.backupId === 'string' ? value : undefined;
  } catch {
    return undefined;
  }
}

/** The last verify of each of these backups that has been verified. */
export async function readVerifyOutcomes(
  redis: Redis,
  prefix: string,
  backupIds: readonly string[],
  target = defaultVerifyTarget,
): Promise<Map<string, VerifyOutcome>> {
  const outcomes = new Map<string, VerifyOutcome>();
  if (backupIds.length === 0) return outcomes;
  const values = await redis.hmget(verifyOutcomesKey(prefix, target), ...backupIds);
  backupIds.forEach((id, index) => {
    const outcome = parseOutcome(values[index] ?? null);
    if (outcome) outcomes.set(id, outcome);
  });
  return outcomes;
}
