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

/** Job outcomes by target, for `pgkeep_target_jobs_total{target,job,outcome}`. */
const targetMetricsKey = (prefix: string) => `${prefix}:pgkeep-target-metrics`;

export async function countTargetOutcome(
  redis: Redis,
  prefix: string,
  target: string,
  job: string,
  outcome: string,
): Promise<void> {
  await redis.hincrby(targetMetricsKey(prefix), `${target}\n${job}\n${outcome}`, 1);
}

export async function readTargetOutcomes(
  redis: Redis,
  prefix: string,
): Promise<{ target: string; job: string; outcome: string; count: number }[]> {
  const hash = await redis.hgetall(targetMetricsKey(prefix));
  return Object.entries(hash).flatMap(([field, value]) => {
    const [target, job, outcome] = field.split('\n');
    const count = Number(value);
    return target && job && outcome && Number.isFinite(count)
      ? [{ target, job, outcome, count }]
      : [];
  });
}
