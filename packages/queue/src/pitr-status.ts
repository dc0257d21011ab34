import type { PitrStatus } from '@pgkeep/core';
import type { Redis } from 'ioredis';

export type { PitrStatus };

const keyOf = (prefix: string, server: string) => `${prefix}:pitr-status:${server}`;

export async function publishPitrStatus(
  redis: Redis,
  prefix: string,
  status: PitrStatus,
  ttlMs: number,
): Promise<void> {
  await redis.set(keyOf(prefix, status.server), JSON.stringify(status), 'PX', ttlMs);
}

export async function readPitrStatus(
  redis: Redis,
  prefix: string,
  server: string,
): Promise<PitrStatus | null> {
  const value = await redis.get(keyOf(prefix, server));
  if (!value) return null;
  try {
    return JSON.parse(value) as PitrStatus;
  } catch {
    return null;
  }
}
