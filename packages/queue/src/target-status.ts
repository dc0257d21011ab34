import type { Redis } from 'ioredis';

/**
 * Per target: the last job that failed for good, and when a job of it last completed, kept in
 * one Redis hash for the API's target list and health detail. Targets come from the
 * configuration and discovery, never from a request, so the hash stays as small as they are.
 */
const statusKey = (prefix: string) => `${prefix}:pgkeep-target-status`;

export interface TargetFailure {
  job: string;
  code: string;
  message: string;
  at: string;
}

export async function recordTargetFailure(
  redis: Redis,
  prefix: string,
  target: string,
  failure: TargetFailure,
): Promise<void> {
  await redis.hset(statusKey(prefix), `${target}\nfailure`, JSON.stringify(failure));
}

export async function recordTargetSuccess(
  redis: Redis,
  prefix: string,
  target: string,
  job: string,
): Promise<void> {
  await redis.hset(
    statusKey(prefix),
    `${target}\nsuccess`,
    JSON.stringify({ job, at: new Date().toISOString() }),
  );
}

export async function readTargetStatus(
  redis: Redis,
  prefix: string,
  target: string,
): Promise<{ failure: TargetFailure | null; success: { job: string; at: string } | null }> {
  const [failure, success] = await redis.hmget(
    statusKey(prefix),
    `${target}\nfailure`,
    `${target}\nsuccess`,
  );
  const parse = <T>(value: string | null | undefined): T | null => {
    if (!value) return null;
    try {
      return JSON.parse(value) as T;
    } catch {
      return null;
    }
  };
  return { failure: parse<TargetFailure>(failure), success: parse(success) };
}
