import { createHash } from 'node:crypto';
import type { ApiExample } from '../../apps/api/src/api-examples.js';

/**
 * Recorded answers of the real API made stable: what changes from run to run (ids, times,
 * checksums, the test's own database name and directory, worker hosts) becomes a placeholder of
 * the same shape, the same real value always the same placeholder, so that a job id in a 202 is
 * the one polled after it and times keep their order. Sizes, counts and versions stay as
 * recorded.
 */

const ISO_TIME = /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})/g;
const BACKUP_ID = /(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z)-([0-9a-f]{12})/g;
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;
const PRE_RESTORE = /_pre_restore_\d{14}_[0-9a-f]{4}(?![0-9a-f])/g;
const SHA256 = /(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])/g;
const BASE_TIME = Date.parse('2026-01-22T16:30:00.000Z');

const idStampToIso = (stamp: string) =>
  stamp.replace(/T(\d{2})-(\d{2})-(\d{2})-(\d{3})Z$/, 'T$1:$2:$3.$4Z');
const isoToIdStamp = (iso: string) => iso.replace(/[:.]/g, '-');

export interface Placeholders {
  /** Exact strings to replace first (longest first): the database name, directories. */
  literals: Record<string, string>;
}

/** Every example, normalised: one JSON text in, each real value swapped for its placeholder. */
export function normaliseExamples(
  operations: Record<string, ApiExample[]>,
  placeholders: Placeholders,
): Record<string, ApiExample[]> {
  let text = JSON.stringify(operations);
  const literals = Object.entries(placeholders.literals).sort(([a], [b]) => b.length - a.length);
  for (const [real, placeholder] of literals) text = text.replaceAll(real, placeholder);

  // Times, in the order they happened, from BASE_TIME one second apart; a backup id's stamp is
  // one of them (the backup's createdAt).
  const times = new Set<number>();
  for (const match of text.matchAll(ISO_TIME)) times.add(Date.parse(match[0]));
  for (const match of text.matchAll(BACKUP_ID)) times.add(Date.parse(idStampToIso(match[1] ?? '')));
  const order = [...times].filter(Number.isFinite).sort((a, b) => a - b);
  const timeOf = (real: number) => new Date(BASE_TIME + order.indexOf(real) * 1000);

  const suffixes = new Map<string, string>();
  text = text.replace(BACKUP_ID, (_, stamp: string, suffix: string) => {
    if (!suffixes.has(suffix))
      suffixes.set(suffix, (suffixes.size + 1).toString(16).padStart(12, '0'));
    return `${isoToIdStamp(timeOf(Date.parse(idStampToIso(stamp))).toISOString())}-${suffixes.get(suffix)}`;
  });
  text = text.replace(ISO_TIME, (real) => {
    const iso = timeOf(Date.parse(real)).toISOString();
    // The same precision as the original: with milliseconds or without.
    return real.includes('.') ? iso : iso.replace(/\.\d{3}Z$/, 'Z');
  });

  const uuids = new Map<string, string>();
  text = text.replace(UUID, (real) => {
    if (!uuids.has(real)) {
      uuids.set(real, `00000000-0000-4000-8000-${(uuids.size + 1).toString().padStart(12, '0')}`);
    }
    return uuids.get(real) as string;
  });

  // A replaced database's name: `<db>_pre_restore_<UTC stamp>_<random>`.
  const replaced = new Map<string, string>();
  text = text.replace(PRE_RESTORE, (real) => {
    if (!replaced.has(real)) {
      const n = replaced.size + 1;
      replaced.set(real, `_pre_restore_2026012216300${n % 10}_${n.toString(16).padStart(4, '0')}`);
    }
    return replaced.get(real) as string;
  });

  // A checksum stands for itself in hex (sha256, ETag) and in base64 (Repr-Digest).
  const digests = new Map<string, string>();
  for (const match of text.matchAll(SHA256)) {
    if (!digests.has(match[0])) {
      digests.set(
        match[0],
        createHash('sha256')
          .update(`example ${digests.size + 1}`)
          .digest('hex'),
      );
    }
  }
  for (const [real, placeholder] of digests) {
    text = text.replaceAll(real, placeholder);
    const base64 = (hex: string) => Buffer.from(hex, 'hex').toString('base64');
    text = text.replaceAll(base64(real), base64(placeholder));
  }
  return JSON.parse(text) as Record<string, ApiExample[]>;
}

/**
 * A JSON value's shape: an object's keys, each with its shape; an array's first element's;
 * a primitive's type. `null` is left out of the comparison (a nullable field is null in one
 * run and not in another), as is an empty array.
 */
export function shapeDifferences(recorded: unknown, fresh: unknown, at = '$'): string[] {
  if (recorded === null || fresh === null) return [];
  if (Array.isArray(recorded) || Array.isArray(fresh)) {
    if (!Array.isArray(recorded) || !Array.isArray(fresh)) return [`${at}: array and not`];
    if (recorded.length === 0 || fresh.length === 0) return [];
    return shapeDifferences(recorded[0], fresh[0], `${at}[0]`);
  }
  if (typeof recorded !== typeof fresh) return [`${at}: ${typeof recorded} now ${typeof fresh}`];
  if (typeof recorded !== 'object') return [];
  const a = recorded as Record<string, unknown>;
  const b = fresh as Record<string, unknown>;
  // A record keyed by data (row counts, destinations) differs in its keys, not its shape.
  const differences: string[] = [];
  for (const key of Object.keys(a)) {
    if (!(key in b)) differences.push(`${at}.${key}: recorded, no longer answered`);
    else differences.push(...shapeDifferences(a[key], b[key], `${at}.${key}`));
  }
  for (const key of Object.keys(b)) {
    if (!(key in a)) differences.push(`${at}.${key}: answered now, not in the recording`);
  }
  return differences;
}
