import { Redis } from 'ioredis';

/**
 * Workers block on Redis and must retry forever (`maxRetriesPerRequest: null`, as BullMQ
 * requires). The API must fail fast instead, so that a request answers 503 while Redis is down
 * rather than hanging: no offline queue, one retry.
 */
export function createRedisConnection(url: string, role: 'worker' | 'api', name: string): Redis {
  return new Redis(url, {
    connectionName: name,
    maxRetriesPerRequest: role === 'worker' ? null : 1,
    enableOfflineQueue: role === 'worker',
    lazyConnect: false,
  });
}
