import type { Redis } from 'ioredis';

/**
 * Each worker announces itself in Redis every few seconds with a short expiry, so the API's
 * health check can say whether any worker is alive and which pg_dump it runs, without ever
 * running pg_dump itself.
 */
export interface WorkerHeartbeat {
  workerId: string;
  hostname: string;
  pid: number;
  startedAt: string;
  seenAt: string;
  pgDump: { version: string; major: number };
  pgRestore: { version: string; major: number };
}

const keyPrefix = (prefix: string) => `${prefix}:pgkeep-workers:`;

export async function publishHeartbeat(
  redis: Redis,
  prefix: string,
  heartbeat: WorkerHeartbeat,
  ttlMs: number,
): Promise<void> {
  await redis.set(
    `${keyPrefix(prefix)}${heartbeat.workerId}`,
    JSON.stringify(heartbeat),
    'PX',
    ttlMs,
  );
}

export async function removeHeartbeat(redis: Redis, prefix: string, workerId: string) {
  await redis.del(`${keyPrefix(prefix)}${workerId}`);
}

export async function readHeartbeats(redis: Redis, prefix: string): Promise<WorkerHeartbeat[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `${keyPrefix(prefix)}*`, 'COUNT', 100);
    cursor = next;
    keys.push(...found);
  } while (cursor !== '0');
  if (keys.length === 0) return [];
  const values = await redis.mget(keys);
  const beats: WorkerHeartbeat[] = [];
  for (const value of values) {
    if (!value) continue;
    try {
      beats.push(JSON.parse(value) as WorkerHeartbeat);
    } catch {
      // a foreign key under our prefix; not a worker
    }
  }
  return beats;
}
