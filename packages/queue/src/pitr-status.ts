import type { Redis } from 'ioredis';

/**
 * What a server's WAL receiver is doing, published by the worker that leads it (or, while no
 * requirement is met, by any worker that checked), with an expiry: a status that nobody renews
 * vanishes, and the API then says that no receiver runs.
 */
export interface PitrStatus {
  server: string;
  /**
   * `streaming`: pg_receivewal runs and the archive follows; `starting`: the leader is starting
   * it; `unavailable`: a requirement is missing (see reasons); `error`: the receiver stopped
   * and is being started again (see reasons).
   */
  state: 'streaming' | 'starting' | 'unavailable' | 'error';
  reasons: string[];
  leader: { workerId: string; hostname: string; pid: number; since: string } | null;
  slot: {
    name: string;
    active: boolean;
    /** WAL the slot holds on the server (bytes from its restart_lsn to the current position). */
    retainedBytes: number | null;
    walStatus: string | null;
  } | null;
  lastArchived: { name: string; at: string } | null;
  /** The last time the server had written nothing past the last archived segment. */
  caughtUpAt: string | null;
  /** The server's current WAL insert position, and bytes of it not yet archived. */
  insertLsn: string | null;
  lagBytes: number | null;
  updatedAt: string;
}

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
