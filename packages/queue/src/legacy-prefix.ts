import { queueNames } from '@pgkeep/core';
import type { Redis } from 'ioredis';

/** pgkeep's own hashes that outlive jobs: runtime schedule changes and the metrics counters. */
const carriedHashes = ['pgkeep-schedules', 'pgkeep-metrics'] as const;

/**
 * Keys were once under `<QUEUE_PREFIX>:`, now under `{<QUEUE_PREFIX>}:` (a Redis Cluster hash
 * tag). At a worker's start: the schedule changes and counters of the old prefix are copied over
 * once (not where the new prefix has its own already), and jobs still waiting under the old
 * prefix, which no worker will ever take, are counted so the log can say to queue them again.
 */
export async function carryOverLegacyPrefix(
  redis: Redis,
  legacyPrefix: string,
  prefix: string,
): Promise<{ copied: string[]; strandedJobs: number }> {
  const copied: string[] = [];
  for (const name of carriedHashes) {
    const from = `${legacyPrefix}:${name}`;
    const to = `${prefix}:${name}`;
    if ((await redis.exists(to)) === 1 || (await redis.exists(from)) === 0) continue;
    const fields = await redis.hgetall(from);
    if (Object.keys(fields).length === 0) continue;
    // HSETNX per field: a worker of the new prefix writing meanwhile keeps what it wrote.
    for (const [field, value] of Object.entries(fields)) await redis.hsetnx(to, field, value);
    await redis.del(from);
    copied.push(name);
  }
  let strandedJobs = 0;
  for (const queue of Object.values(queueNames)) {
    const base = `${legacyPrefix}:${queue}`;
    const [wait, paused, delayed, prioritized] = await Promise.all([
      redis.llen(`${base}:wait`),
      redis.llen(`${base}:paused`),
      redis.zcard(`${base}:delayed`),
      redis.zcard(`${base}:prioritized`),
    ]);
    strandedJobs += wait + paused + delayed + prioritized;
  }
  return { copied, strandedJobs };
}
