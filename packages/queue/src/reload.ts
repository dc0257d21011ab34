import type { Redis } from 'ioredis';

/**
 * Reloading the targets file on every worker: the API publishes who asked, each worker reads
 * its own file again (as SIGHUP does) and answers nothing; its log says what changed.
 */
export const reloadChannel = (prefix: string) => `${prefix}:pgkeep-reload`;

export async function requestReload(redis: Redis, prefix: string, requestedBy: string) {
  return redis.publish(reloadChannel(prefix), JSON.stringify({ requestedBy }));
}

/** Calls `onReload` for every reload published; `subscriber` must already be a subscriber. */
export async function listenForReloads(
  subscriber: Redis,
  prefix: string,
  onReload: (requestedBy: string) => void,
): Promise<void> {
  subscriber.on('message', (channel: string, message: string) => {
    if (channel !== reloadChannel(prefix)) return;
    try {
      const parsed = JSON.parse(message) as { requestedBy?: unknown };
      onReload(typeof parsed.requestedBy === 'string' ? parsed.requestedBy : 'unknown');
    } catch {
      // not ours
    }
  });
  await subscriber.subscribe(reloadChannel(prefix));
}
