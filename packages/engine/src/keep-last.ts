import type { BackupManifest } from '@pgkeep/core';

/** Backups that count toward `keepLast`: pre-restore safety copies follow their own rule. */
const retainedTypes = new Set(['manual', 'scheduled']);

/**
 * Splits backups into those kept and those deleted under "keep the newest N". Pure. The newest
 * completed backup is always kept, whatever N says.
 */
export function selectByKeepLast(
  manifests: readonly BackupManifest[],
  keepLast: number,
): { keep: BackupManifest[]; remove: BackupManifest[] } {
  const counted = manifests
    .filter((manifest) => retainedTypes.has(manifest.type))
    .sort((a, b) =>
      a.createdAt === b.createdAt
        ? b.id.localeCompare(a.id)
        : b.createdAt.localeCompare(a.createdAt),
    );
  const limit = Math.max(1, keepLast);
  return { keep: counted.slice(0, limit), remove: counted.slice(limit) };
}
