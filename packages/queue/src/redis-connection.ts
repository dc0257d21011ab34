import { Redis } from 'ioredis';

/**
 * Workers block on Redis and must retry forever (`maxRetriesPerRequest: null`, as BullMQ
 * requires). The API must fail fast instead: a command waits for at most one reconnection, and
 * queue calls first check that the connection is ready (see `connectionReady`), so a request
 * answers 503 while Redis is down rather than hanging.
 */
export function createRedisConnection(url: string, role: 'worker' | 'api', name: string): Redis {
  return new Redis(url, {
    connectionName: name,
    maxRetriesPerRequest: role === 'worker' ? null : 1,
    lazyConnect: false,
  });
}
