import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import {
  type BackupManifest,
  catalogKeyId,
  checkManifestSignature,
  isBackupId,
  type Logger,
  parseManifestText,
  toAppError,
} from '@pgkeep/core';
import type { Destination, InvalidManifest } from './destination.js';
import { fsyncDir, PARTIAL_SUFFIX } from './durable-files.js';
import type { LocalStorage } from './local-storage.js';

const MANIFEST_SUFFIX = '.manifest.json';
/** Names the catalog key the manifests were all signed with (see signCatalog). */
const SIGNED_MARKER = '.catalog-key';

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
  const previous = await signedWith(catalog.dir);
  if (previous === keyId) return undefined;
  await catalog.ensureDir();
  const { manifests, refused } = await manifestsToSign(catalog, previous === undefined);
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
  await markSignedWith(catalog.dir, keyId);
  if (refused.length > 0) {
    logger.warn({ refused }, 'catalog: manifests left unsigned, they are not listed');
  }
  logger.info({ signed: manifests.length, catalogKeyId: keyId }, 'catalog: manifests signed');
  return { signed: manifests.map((manifest) => manifest.id), refused };
}

/** The id of the catalog key every manifest in `dir` was last signed with, if any. */
async function signedWith(dir: string): Promise<string | undefined> {
  try {
    return (await fs.readFile(path.join(dir, SIGNED_MARKER), 'utf8')).trim() || undefined;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** Records that every manifest in `dir` is signed with the key of this id (no secret in it). */
async function markSignedWith(dir: string, keyId: string): Promise<void> {
  const finalPath = path.join(dir, SIGNED_MARKER);
  const partialPath = `${finalPath}.${randomBytes(4).toString('hex')}${PARTIAL_SUFFIX}`;
  await fs.writeFile(partialPath, `${keyId}\n`, { mode: 0o600 });
  await fs.rename(partialPath, finalPath);
  await fsyncDir(dir);
}

/**
 * The catalog's manifests that are sound but not signed with the signing key: signed with a key
 * still accepted but no longer signing, and (`unsigned`) those without an HMAC, written before
 * any key was configured. One whose HMAC verifies under no accepted key is never among them:
 * it was changed, or is not ours.
 */
async function manifestsToSign(
  catalog: LocalStorage,
  unsigned: boolean,
): Promise<{ manifests: BackupManifest[]; refused: InvalidManifest[] }> {
  const { signing, accepted } = catalog.catalogKeys;
  const manifests: BackupManifest[] = [];
  const refused: InvalidManifest[] = [];
  if (!signing) return { manifests, refused };
  for (const name of await fs.readdir(catalog.dir)) {
    if (!name.startsWith('backup-') || !name.endsWith(MANIFEST_SUFFIX)) continue;
    const id = name.slice('backup-'.length, -MANIFEST_SUFFIX.length);
    if (!isBackupId(id)) continue;
    const text = await fs.readFile(path.join(catalog.dir, name), 'utf8').catch(() => undefined);
    if (text === undefined) continue;
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      refused.push({ file: name, reason: 'not JSON' });
      continue;
    }
    const signature = checkManifestSignature(json, accepted);
    if (signature.status === 'valid' && signature.key.equals(signing)) continue;
    if (signature.status === 'mismatch') {
      refused.push({ file: name, reason: 'HMAC does not match: not signed again' });
      continue;
    }
    if (signature.status === 'missing' && !unsigned) {
      refused.push({ file: name, reason: 'no HMAC: written after a catalog key was in force' });
      continue;
    }
    const parsed = parseManifestText(text, id);
    if (parsed.ok) manifests.push(parsed.manifest);
    else refused.push({ file: name, reason: parsed.reason });
  }
  return { manifests, refused };
}
