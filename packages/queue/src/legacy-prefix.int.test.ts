import { randomBytes } from 'node:crypto';
import { newJobId } from '@pgkeep/core';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { deleteRedisKeys } from '../../../test/support/test-env.js';
import { carryOverLegacyPrefix } from './legacy-prefix.js';
import { closeQueues, openQueues } from './queues.js';

let redis: Redis;
let name: string;

beforeAll(() => {
  redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: 1 });
  name = `pgkeep-t-legacy-${randomBytes(4).toString('hex')}`;
});

afterAll(async () => {
  await deleteRedisKeys(inject('redisUrl'), name);
  redis.disconnect();
});

describe('keys of the prefix before the Redis Cluster hash tag', () => {
  it('carries schedule changes and counters over once, and counts jobs left waiting', async () => {
    const legacy = name;
    const prefix = `{${name}}`;
    await redis.hset(`${legacy}:pgkeep-schedules`, 'backup', '{"settings":{}}');
    await redis.hset(`${legacy}:pgkeep-metrics`, 'jobs_total:backup:completed', '41');
    // Metrics already counted under the new prefix are never overwritten.
    await redis.hset(`${prefix}:pgkeep-metrics`, 'jobs_total:backup:completed', '2');
    const old = openQueues(redis, legacy, { onError: () => {} });
    await old.backups.add('backup', {}, { jobId: newJobId('backup') });
    await old.maintenance.add('delete', {}, { jobId: newJobId('delete'), delay: 60_000 });
    await closeQueues(old);

    const first = await carryOverLegacyPrefix(redis, legacy, prefix);
    expect(first).toEqual({ copied: ['pgkeep-schedules'], strandedJobs: 2 });
    expect(await redis.hget(`${prefix}:pgkeep-schedules`, 'backup')).toBe('{"settings":{}}');
    expect(await redis.exists(`${legacy}:pgkeep-schedules`)).toBe(0);
    expect(await redis.hget(`${prefix}:pgkeep-metrics`, 'jobs_total:backup:completed')).toBe('2');

    const again = await carryOverLegacyPrefix(redis, legacy, prefix);
    expect(again.copied).toEqual([]);
  });
});
