import { type BackupCopy, type BackupManifest, type Logger, toAppError } from '@pgkeep/core';
import type { Destination } from './destination.js';
import type { LocalStorage } from './local-storage.js';

/**
 * Adds to the catalog every backup whose manifest a remote destination holds and the catalog
 * does not (after the local disk was lost, or on a new machine). A local copy listed in such a
 * manifest is kept only if its artifact is really there. `dryRun`: reads all the same and
 * returns what it would add, writing nothing (not even the catalog directory).
 */
export async function rebuildCatalog(
  catalog: LocalStorage,
  destinations: Destination[],
  logger: Logger,
  options: { dryRun?: boolean } = {},
): Promise<{ added: string[]; unreachable: string[] }> {
  const dryRun = options.dryRun === true;
  if (!dryRun) await catalog.ensureDir();
  const known = new Set((await catalog.listManifests()).manifests.map((m) => m.id));
  const added: string[] = [];
  const unreachable: string[] = [];
  for (const destination of destinations) {
    if (destination === catalog) continue;
    let manifests: BackupManifest[];
    try {
      manifests = (await destination.listManifests()).manifests;
    } catch (error) {
      unreachable.push(destination.name);
      logger.warn(
        { destination: destination.name, err: toAppError(error).message },
        'could not read the manifests of a destination',
      );
      continue;
    }
    for (const manifest of manifests) {
      if (known.has(manifest.id)) continue;
      const copies: BackupCopy[] = [];
      for (const copy of manifest.copies) {
        if (copy.destination === 'local') {
          const stat = await catalog.statArtifact(manifest.filename);
          if (stat?.size !== manifest.size) continue;
        }
        copies.push(copy);
      }
      if (copies.length === 0) continue;
      if (!dryRun) await catalog.writeManifest({ ...manifest, copies });
      known.add(manifest.id);
      added.push(manifest.id);
    }
  }
  if (added.length > 0 && !dryRun) {
    logger.info({ added: added.length }, 'catalog: backups added back from destinations');
  }
  return { added, unreachable };
}
