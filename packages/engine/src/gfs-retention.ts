import { type BackupManifest, type Dated, newestFirst } from '@pgkeep/core';

/** Grandfather-father-son: how many daily, weekly, monthly and yearly backups to keep. */
export interface GfsPolicy {
  days: number;
  weeks: number;
  months: number;
  years: number;
}

type Period = keyof GfsPolicy;

const formatters = new Map<string, Intl.DateTimeFormat>();

/** The calendar date of an instant in a time zone: a backup at 23:30 UTC is "tomorrow" in UTC+2. */
function localDate(instant: Date, timeZone: string): { year: number; month: number; day: number } {
  let formatter = formatters.get(timeZone);
  if (!formatter) {
    formatter = new Intl.DateTimeFormat('en-CA', {
      timeZone,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
    });
    formatters.set(timeZone, formatter);
  }
  const parts = Object.fromEntries(
    formatter.formatToParts(instant).map((part) => [part.type, part.value]),
  );
  return { year: Number(parts.year), month: Number(parts.month), day: Number(parts.day) };
}

/** ISO 8601 week (weeks start on Monday; week 1 holds the year's first Thursday). */
function isoWeek(year: number, month: number, day: number): string {
  const date = new Date(Date.UTC(year, month - 1, day));
  const weekday = date.getUTCDay() || 7;
  date.setUTCDate(date.getUTCDate() + 4 - weekday);
  const weekYear = date.getUTCFullYear();
  const week = Math.ceil(((date.getTime() - Date.UTC(weekYear, 0, 1)) / 86_400_000 + 1) / 7);
  return `${weekYear}-W${String(week).padStart(2, '0')}`;
}

export function periodKey(instant: Date, period: Period, timeZone: string): string {
  const { year, month, day } = localDate(instant, timeZone);
  const pad = (n: number) => String(n).padStart(2, '0');
  if (period === 'days') return `${year}-${pad(month)}-${pad(day)}`;
  if (period === 'weeks') return isoWeek(year, month, day);
  if (period === 'months') return `${year}-${pad(month)}`;
  return String(year);
}

export interface RetentionSelection<M extends Dated = BackupManifest> {
  keep: M[];
  remove: M[];
  /** For each kept backup, the rules that keep it (`days`, `weeks`, …, `newest`). */
  reasons: Record<string, string[]>;
}

/**
 * Keeps the newest backup of each of the last N days, weeks, months and years that have a
 * backup (a pause in backups does not age the old ones out faster), with calendar periods
 * taken in `timeZone`. The newest backup is always kept. Pure.
 */
export function selectByGfs<M extends Dated>(
  manifests: readonly M[],
  policy: GfsPolicy,
  timeZone: string,
): RetentionSelection<M> {
  const counted = [...manifests].sort(newestFirst);
  const reasons: Record<string, string[]> = {};
  const keepFor = (manifest: M, reason: string) => {
    reasons[manifest.id] ??= [];
    reasons[manifest.id]?.push(reason);
  };
  const [newest] = counted;
  if (newest) keepFor(newest, 'newest');
  for (const period of ['days', 'weeks', 'months', 'years'] as const) {
    const limit = policy[period];
    if (!Number.isFinite(limit) || limit <= 0) continue;
    const seen = new Set<string>();
    for (const manifest of counted) {
      const key = periodKey(new Date(manifest.createdAt), period, timeZone);
      if (seen.has(key)) continue;
      // The first backup met in a period is its newest: `counted` runs newest first.
      seen.add(key);
      keepFor(manifest, period);
      if (seen.size >= limit) break;
    }
  }
  return {
    keep: counted.filter((manifest) => reasons[manifest.id]),
    remove: counted.filter((manifest) => !reasons[manifest.id]),
    reasons,
  };
}
