import { type Dated, newestFirst } from '@pgkeep/core';

/**
 * Splits backups into those kept and those deleted under "keep the newest N". Pure. The newest
 * completed backup is always kept, whatever N says.
 */
export function selectByKeepLast<M extends Dated>(
  manifests: readonly M[],
  keepLast: number,
): { keep: M[]; remove: M[] } {
  const counted = [...manifests].sort(newestFirst);
  const limit = Number.isFinite(keepLast) ? Math.max(1, Math.floor(keepLast)) : 1;
  return { keep: counted.slice(0, limit), remove: counted.slice(limit) };
}
