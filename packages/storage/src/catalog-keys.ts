import type { CatalogKeys } from '@pgkeep/core';
import type { KeyRing } from './encryption.js';

/**
 * Which key signs the catalog's manifests, and which keys a manifest may verify under.
 *
 * CATALOG_KEY, when set, signs. Otherwise, with encryption on, a key derived from the current
 * encryption key or passphrase signs: a deployment that encrypts authenticates its manifests
 * without a second secret to keep. Keys derived from retired encryption keys (and the current
 * one, once CATALOG_KEY is set) are still accepted, so rotating a key hides no backup. With
 * neither, nothing is signed and manifests are read as they are.
 */
export function catalogKeysFor(catalogKey: Buffer | null, ring: KeyRing): CatalogKeys {
  const derived = ring.derivedCatalogKeys();
  const signing = catalogKey ?? derived.current;
  if (!signing) return { signing: null, accepted: [] };
  const accepted = [signing];
  for (const key of derived.all) {
    if (!accepted.some((known) => known.equals(key))) accepted.push(key);
  }
  return { signing, accepted };
}
