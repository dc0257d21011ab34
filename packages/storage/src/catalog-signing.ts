import { catalogKeyId, type Logger, toAppError } from '@pgkeep/core';
import type { Destination, InvalidManifest } from './destination.js';
import type { LocalStorage } from './local-storage.js';

/**
 * Once per catalog key, here and beside each remote copy: signs again the manifests signed
 * with a key that is still accepted but no longer signs (a rotated encryption key, a new
 * CATALOG_KEY), so that every backup stays listed. The first time any key is in force, it
 * also signs the manifests without an HMAC that the catalog already held: a deployment that
 * turns encryption or CATALOG_KEY on keeps the backups it had. The local catalog is this
 * deployment's own disk and is trusted that once; a bucket never is. From then on an unsigned
 * manifest is refused wherever it turns up. Call only while no job changes the catalog.
 */
export async function signCatalog(
  catalog: LocalStorage,
  destinations: Destination[],
  logger: Logger,
): Promise<{ signed: string[]; refused: InvalidManifest[] } | undefined> {
  const { signing } = catalog.catalogKeys;
  if (!signing) return undefined;
  const keyId = catalogKeyId(signing);
  const previous = await catalog.signedWith();
  if (previous === keyId) return undefined;
  await catalog.ensureDir();
  const { manifests, refused } = await catalog.manifestsToSign(previous === undefined);
  for (const manifest of manifests) {
    for (const copy of manifest.copies) {
      const destination = destinations.find(({ name }) => name === copy.destination);
      if (!destination || destination === catalog) continue;
      await destination.writeManifest(manifest).catch((error: unknown) => {
        logger.warn(
          {
            backupId: manifest.id,
            destination: destination.name,
            err: toAppError(error).message,
          },
          'could not sign the manifest beside a remote copy; a catalog rebuild will not bring that copy back',
        );
      });
    }
    await catalog.writeManifest(manifest);
  }
  await catalog.markSignedWith(keyId);
  if (refused.length > 0) {
    logger.warn({ refused }, 'catalog: manifests left unsigned, they are not listed');
  }
  logger.info({ signed: manifests.length, catalogKeyId: keyId }, 'catalog: manifests signed');
  return { signed: manifests.map((manifest) => manifest.id), refused };
}
