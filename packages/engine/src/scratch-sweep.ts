import { dropDatabaseForce, listScratchDatabases, lockResources } from '@pgkeep/pg';
import { destructiveSlots, releaseAll, tryAcquireAll } from './caps.js';
import type { EngineContext } from './engine-context.js';
import { maintenanceClient } from './run-restore.js';

/**
 * Drops scratch databases left by restores and verifies whose worker died, but only those of
 * this deployment, and only while none can be in use: no restore runs (the destructive lock is
 * free) and no verify holds a scratch database (the verify-scratch lock is free).
 */
export async function dropAbandonedScratchDatabases(
  engine: Pick<EngineContext, 'config' | 'locks' | 'logger' | 'maintenance'>,
): Promise<string[]> {
  const dropped: string[] = [];
  const kinds = [
    { kind: 'restore', resources: destructiveSlots(engine.config) },
    { kind: 'verify', resources: [lockResources.verifyScratch as string] },
  ] as const satisfies readonly { kind: string; resources: string[] }[];
  for (const { kind, resources } of kinds) {
    const locks = await tryAcquireAll(engine.locks, resources);
    if (!locks) continue;
    try {
      const admin = await maintenanceClient(engine);
      try {
        for (const name of await listScratchDatabases(admin, kind, engine.config.LOCK_NAMESPACE)) {
          await dropDatabaseForce(admin, name);
          dropped.push(name);
        }
      } finally {
        await admin.end().catch(() => {});
      }
    } finally {
      await releaseAll(locks);
    }
  }
  if (dropped.length > 0)
    engine.logger.info(
      { dropped },
      'dropped scratch databases of unfinished restores and verifies',
    );
  return dropped;
}
