import type { ArchivedWal, BaseBackupManifest, RecoverableWindow } from '@pgkeep/core';
import { isSegmentName, parseSegmentName } from './wal-position.js';

interface Run {
  first: ArchivedWal;
  last: ArchivedWal;
  firstSegno: bigint;
  lastSegno: bigint;
  /** The latest time known to be covered by the run's segments. */
  coveredUntil: number | null;
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/**
 * What a restore can reach on the server's newest timeline: each base backup whose WAL (from
 * its start segment to its stop segment) is archived can be recovered from its end
 * (`stopTime`) to the end of the unbroken run of segments it lies in. Where runs break, a gap
 * lasts until the next base backup after the break ends (`to: null` while there is none). Pure.
 */
export function recoverableWindow(
  server: string,
  baseBackups: readonly BaseBackupManifest[],
  archived: readonly ArchivedWal[],
  segmentSize: number,
  now: Date = new Date(),
): RecoverableWindow {
  const segments = archived
    .filter((entry) => isSegmentName(entry.name))
    .map((entry) => ({ entry, ...parseSegmentName(entry.name, segmentSize) }));
  const timeline = Math.max(
    0,
    ...segments.map((segment) => segment.timeline),
    ...baseBackups.map((base) => base.timeline),
  );
  const empty: RecoverableWindow = {
    server,
    timeline: timeline || null,
    from: null,
    to: null,
    gaps: [],
    lagSeconds: null,
    baseBackups: baseBackups.length,
    segments: segments.length,
    lastSegment: null,
  };
  const onTimeline = segments
    .filter((segment) => segment.timeline === timeline)
    .sort((a, b) => (a.segno < b.segno ? -1 : a.segno > b.segno ? 1 : 0));
  if (onTimeline.length === 0) return empty;
  empty.lastSegment = onTimeline[onTimeline.length - 1]?.entry.name ?? null;

  const runs: Run[] = [];
  for (const segment of onTimeline) {
    const covered = segment.entry.coveredUntil ? Date.parse(segment.entry.coveredUntil) : null;
    const run = runs[runs.length - 1];
    if (run && segment.segno === run.lastSegno + 1n) {
      run.last = segment.entry;
      run.lastSegno = segment.segno;
      if (covered !== null) run.coveredUntil = Math.max(run.coveredUntil ?? covered, covered);
    } else if (!run || segment.segno > run.lastSegno) {
      runs.push({
        first: segment.entry,
        last: segment.entry,
        firstSegno: segment.segno,
        lastSegno: segment.segno,
        coveredUntil: covered,
      });
    }
  }

  const intervals: { run: Run; start: number; end: number }[] = [];
  for (const run of runs) {
    let start: number | null = null;
    for (const base of baseBackups) {
      if (base.timeline !== timeline) continue;
      const first = parseSegmentName(base.startSegment, segmentSize).segno;
      const last = parseSegmentName(base.stopSegment, segmentSize).segno;
      if (first < run.firstSegno || last > run.lastSegno) continue;
      const stop = Date.parse(base.stopTime);
      start = start === null ? stop : Math.min(start, stop);
    }
    if (start === null) continue;
    intervals.push({ run, start, end: Math.max(start, run.coveredUntil ?? start) });
  }
  const first = intervals[0];
  const last = intervals[intervals.length - 1];
  if (!first || !last) return empty;
  const gaps: RecoverableWindow['gaps'] = [];
  for (let index = 1; index < intervals.length; index += 1) {
    const before = intervals[index - 1] as (typeof intervals)[number];
    const after = intervals[index] as (typeof intervals)[number];
    gaps.push({
      afterSegment: before.run.last.name,
      beforeSegment: after.run.first.name,
      from: iso(before.end),
      to: iso(after.start),
    });
  }
  // WAL archived after a break that no base backup since bridges: a gap until the next one.
  const later = runs.find((run) => run.firstSegno > last.run.lastSegno);
  if (later) {
    gaps.push({
      afterSegment: last.run.last.name,
      beforeSegment: later.first.name,
      from: iso(last.end),
      to: null,
    });
  }
  return {
    ...empty,
    from: iso(first.start),
    to: iso(last.end),
    gaps,
    lagSeconds: Math.max(0, Math.round((now.getTime() - last.end) / 1000)),
  };
}
