import type { ArchivedWal, BaseBackupManifest } from '@pgkeep/core';
import { describe, expect, it } from 'vitest';
import { planArchiveCleanup } from './pitr-cleanup.js';
import { archivedWal, baseBackup, segment, segmentRun } from './pitr-fixtures.js';
import { recoverableWindow } from './recoverable-window.js';

const SIZE = 16 * 1024 * 1024;
const keepLast = (n: number) => ({ kind: 'keep-last' as const, keepLast: n });
const gfs = (days: number, weeks = 0, months = 0, years = 0) => ({
  kind: 'gfs' as const,
  days,
  weeks,
  months,
  years,
});
const ids = (list: readonly BaseBackupManifest[]) => list.map((manifest) => manifest.id);
const names = (list: readonly ArchivedWal[]) => list.map((entry) => entry.name).sort();
/** Segment names `from`..`to` of a timeline. */
const segments = (timeline: number, from: number, to: number) =>
  segmentRun(timeline, from, to).map((entry) => entry.name);

/** Three weekly base backups, each starting 10 segments after the one before. */
const first = baseBackup({ start: 2, stop: 3, stopTime: '2026-03-01T01:05:00.000Z' });
const second = baseBackup({ start: 12, stop: 13, stopTime: '2026-03-08T01:05:00.000Z' });
const third = baseBackup({ start: 22, stop: 23, stopTime: '2026-03-15T01:05:00.000Z' });
const history = archivedWal('00000002.history', null);
const wal = [...segmentRun(1, 1, 30), history];

describe('planArchiveCleanup', () => {
  it('keep-last 1 keeps the newest base backup and removes exactly the WAL before its start', () => {
    const plan = planArchiveCleanup([first, third, second], wal, keepLast(1), 'UTC');
    expect(ids(plan.keep)).toEqual([third.id]);
    expect(ids(plan.remove).sort()).toEqual([first.id, second.id].sort());
    expect(plan.keepFrom).toBe(third.startSegment);
    expect(plan.keepFrom).toBe(segment(1, 22));
    expect(names(plan.removeWal)).toEqual(segments(1, 1, 21));
    // Everything from the start segment on stays, and so does the history file.
    const left = wal.filter((entry) => !plan.removeWal.includes(entry));
    expect(names(left)).toEqual([...segments(1, 22, 30), history.name].sort());
  });

  it('keep-last 2 keeps the WAL from the older kept base backup on', () => {
    const plan = planArchiveCleanup([first, second, third], wal, keepLast(2), 'UTC');
    expect(ids(plan.keep)).toEqual([third.id, second.id]);
    expect(ids(plan.remove)).toEqual([first.id]);
    expect(plan.keepFrom).toBe(second.startSegment);
    expect(names(plan.removeWal)).toEqual(segments(1, 1, 11));
  });

  it('keeps every base backup and its WAL when the policy keeps them all', () => {
    const plan = planArchiveCleanup([first, second, third], wal, keepLast(5), 'UTC');
    expect(plan.remove).toEqual([]);
    expect(plan.keepFrom).toBe(first.startSegment);
    expect(names(plan.removeWal)).toEqual([segment(1, 1)]);
  });

  it('removes no WAL at all without a base backup', () => {
    const plan = planArchiveCleanup([], wal, keepLast(1), 'UTC');
    expect(plan).toEqual({ keep: [], remove: [], keepFrom: null, removeWal: [] });
  });

  it('never removes timeline history files', () => {
    const histories = ['00000002.history', '00000003.history'].map((name) =>
      archivedWal(name, null),
    );
    const late = baseBackup({
      timeline: 3,
      start: 40,
      stop: 41,
      stopTime: '2026-03-20T01:05:00.000Z',
    });
    const archived = [...histories, ...segmentRun(3, 38, 42)];
    const plan = planArchiveCleanup([late], archived, keepLast(1), 'UTC');
    expect(names(plan.removeWal)).toEqual(segments(3, 38, 39));
  });

  it('keeps by GFS with base backups on different days', () => {
    // Two on 2 March (the later one is that day's), one each on 1, 3 and 4 March.
    const day1 = baseBackup({ start: 2, stop: 2, stopTime: '2026-03-01T01:05:00.000Z' });
    const day2early = baseBackup({ start: 6, stop: 6, stopTime: '2026-03-02T01:05:00.000Z' });
    const day2late = baseBackup({ start: 10, stop: 10, stopTime: '2026-03-02T13:05:00.000Z' });
    const day3 = baseBackup({ start: 14, stop: 14, stopTime: '2026-03-03T01:05:00.000Z' });
    const day4 = baseBackup({ start: 18, stop: 18, stopTime: '2026-03-04T01:05:00.000Z' });
    const all = [day1, day2early, day2late, day3, day4];

    const threeDays = planArchiveCleanup(all, wal, gfs(3), 'UTC');
    expect(ids(threeDays.keep)).toEqual([day4.id, day3.id, day2late.id]);
    expect(ids(threeDays.remove).sort()).toEqual([day1.id, day2early.id].sort());
    expect(threeDays.keepFrom).toBe(day2late.startSegment);
    expect(names(threeDays.removeWal)).toEqual(segments(1, 1, 9));

    // 2 March 23:30 in UTC is 3 March in Berlin: the day's newest is then the 3 March one.
    const lateNight = baseBackup({ start: 12, stop: 12, stopTime: '2026-03-02T23:30:00.000Z' });
    const withNight = [day1, day2late, lateNight, day3];
    const utc = planArchiveCleanup(withNight, wal, gfs(2), 'UTC');
    expect(ids(utc.keep)).toEqual([day3.id, lateNight.id]);
    expect(utc.keepFrom).toBe(lateNight.startSegment);
    const berlin = planArchiveCleanup(withNight, wal, gfs(2), 'Europe/Berlin');
    expect(ids(berlin.keep)).toEqual([day3.id, day2late.id]);
    expect(berlin.keepFrom).toBe(day2late.startSegment);

    // One a week: the newest of each ISO week (Monday 2 March starts a week).
    const weekly = planArchiveCleanup(all, wal, gfs(0, 2), 'UTC');
    expect(ids(weekly.keep)).toEqual([day4.id, day1.id]);
    expect(weekly.keepFrom).toBe(day1.startSegment);
    expect(names(weekly.removeWal)).toEqual([segment(1, 1)]);
  });

  it('keeps the WAL from the kept base backup that starts earliest, whatever its timeline', () => {
    // A restore to an earlier point began timeline 2 at segment 12; the base backup taken on it
    // after the one on timeline 1 starts earlier in the WAL.
    const onTimeline1 = baseBackup({ start: 20, stop: 21, stopTime: '2026-03-08T01:05:00.000Z' });
    const onTimeline2 = baseBackup({
      timeline: 2,
      start: 14,
      stop: 15,
      stopTime: '2026-03-09T01:05:00.000Z',
    });
    const archived = [...segmentRun(1, 1, 24), history, ...segmentRun(2, 12, 18)];
    const plan = planArchiveCleanup([onTimeline1, onTimeline2], archived, keepLast(2), 'UTC');
    expect(plan.keepFrom).toBe(onTimeline2.startSegment);
    // Timeline 2's first two segments come before its base backup: neither one needs them.
    expect(names(plan.removeWal)).toEqual([...segments(1, 1, 13), ...segments(2, 12, 13)]);
    // Both kept base backups still have all their WAL.
    const left = new Set(names(archived.filter((entry) => !plan.removeWal.includes(entry))));
    for (const name of [...segments(1, 20, 21), ...segments(2, 14, 15)]) {
      expect(left.has(name), name).toBe(true);
    }

    // The other way round: the timeline-1 base backup starts earlier and is kept from.
    const early = baseBackup({ start: 8, stop: 9, stopTime: '2026-03-08T01:05:00.000Z' });
    const both = planArchiveCleanup([early, onTimeline2], archived, keepLast(2), 'UTC');
    expect(both.keepFrom).toBe(early.startSegment);
    expect(names(both.removeWal)).toEqual(segments(1, 1, 7));
  });

  it('also keeps the newest base backup that can be restored while a newer one waits for its WAL', () => {
    // The newest base backup's stop segment has not reached the archive (the receiver is
    // behind or down): it cannot be restored yet, so the one before it must stay, with its WAL.
    const archived = [...segmentRun(1, 1, 22), history];
    expect(recoverableWindow('main', [first, second, third], archived, SIZE, new Date()).from).toBe(
      first.stopTime,
    );

    const plan = planArchiveCleanup([first, second, third], archived, keepLast(1), 'UTC');
    expect(ids(plan.keep)).toEqual([third.id, second.id]);
    expect(ids(plan.remove)).toEqual([first.id]);
    expect(plan.keepFrom).toBe(second.startSegment);
    expect(names(plan.removeWal)).toEqual(segments(1, 1, 11));

    const left = archived.filter((entry) => !plan.removeWal.includes(entry));
    const window = recoverableWindow('main', plan.keep, left, SIZE, new Date());
    expect(window.from).toBe(second.stopTime);

    // Once its WAL is archived, the newest alone is kept again.
    const caughtUp = planArchiveCleanup([first, second, third], wal, keepLast(1), 'UTC');
    expect(ids(caughtUp.keep)).toEqual([third.id]);
  });
});
