import { recoverableWindowSchema } from '@pgkeep/core';
import { describe, expect, it } from 'vitest';
import { archivedWal, at, baseBackup, SEGMENT_SIZE, segment, segmentRun } from './pitr-fixtures.js';
import { recoverableWindow } from './recoverable-window.js';

/** An hour after minute 0; segment n is covered up to minute n. */
const now = new Date(at(60));
const secondsBefore = (instant: string) => Math.round((now.getTime() - Date.parse(instant)) / 1000);

function windowOf(...args: Parameters<typeof recoverableWindow>) {
  const window = recoverableWindow(...args);
  // What the API and metrics report must always fit the schema they declare.
  expect(recoverableWindowSchema.parse(window)).toEqual(window);
  return window;
}

describe('recoverableWindow', () => {
  it('is empty without any archived WAL', () => {
    expect(windowOf('main', [], [], SEGMENT_SIZE, now)).toEqual({
      server: 'main',
      timeline: null,
      from: null,
      to: null,
      gaps: [],
      lagSeconds: null,
      baseBackups: 0,
      segments: 0,
      lastSegment: null,
    });
    const base = baseBackup({ start: 3, stop: 4, stopTime: at(4.5) });
    expect(windowOf('main', [base], [], SEGMENT_SIZE, now)).toMatchObject({
      from: null,
      to: null,
      gaps: [],
      lagSeconds: null,
      baseBackups: 1,
      segments: 0,
      lastSegment: null,
    });
  });

  it('reaches nothing with segments but no base backup', () => {
    const window = windowOf('main', [], segmentRun(1, 1, 6), SEGMENT_SIZE, now);
    expect(window).toMatchObject({
      timeline: 1,
      from: null,
      to: null,
      gaps: [],
      lagSeconds: null,
      baseBackups: 0,
      segments: 6,
      lastSegment: segment(1, 6),
    });
  });

  it('runs from a base backup whose WAL is archived to the end of the unbroken segments', () => {
    const base = baseBackup({ start: 3, stop: 4, stopTime: at(4.5) });
    const archived = [...segmentRun(1, 1, 8), archivedWal('00000001.history', null)];
    const window = windowOf('main', [base], archived, SEGMENT_SIZE, now);
    expect(window).toEqual({
      server: 'main',
      timeline: 1,
      from: base.stopTime,
      to: at(8),
      gaps: [],
      lagSeconds: secondsBefore(at(8)),
      baseBackups: 1,
      // History files are not segments.
      segments: 8,
      lastSegment: segment(1, 8),
    });
    expect(window.lagSeconds).toBe(52 * 60);
  });

  it('does not count a base backup whose stop segment is missing', () => {
    const base = baseBackup({ start: 3, stop: 4, stopTime: at(4.5) });
    const holed = [...segmentRun(1, 1, 3), ...segmentRun(1, 5, 8)];
    expect(windowOf('main', [base], holed, SEGMENT_SIZE, now)).toMatchObject({
      from: null,
      to: null,
      lagSeconds: null,
      gaps: [],
    });
    // Not yet archived at all: the archive ends before the base backup does.
    const short = segmentRun(1, 1, 3);
    expect(windowOf('main', [base], short, SEGMENT_SIZE, now)).toMatchObject({
      from: null,
      to: null,
    });
    // Nor one whose start segment is gone.
    const noStart = [...segmentRun(1, 1, 2), ...segmentRun(1, 4, 8)];
    expect(windowOf('main', [base], noStart, SEGMENT_SIZE, now).from).toBeNull();
  });

  it('starts at the earliest usable base backup of a run', () => {
    const older = baseBackup({ start: 2, stop: 2, stopTime: at(2.5) });
    const newer = baseBackup({ start: 5, stop: 6, stopTime: at(6.5) });
    const window = windowOf('main', [newer, older], segmentRun(1, 1, 8), SEGMENT_SIZE, now);
    expect(window.from).toBe(older.stopTime);
    expect(window.to).toBe(at(8));
    expect(window.baseBackups).toBe(2);
  });

  it('reports WAL missing after the usable run as an open gap, the window ending before it', () => {
    const base = baseBackup({ start: 3, stop: 4, stopTime: at(4.5) });
    const archived = [...segmentRun(1, 1, 6), ...segmentRun(1, 8, 10)];
    const window = windowOf('main', [base], archived, SEGMENT_SIZE, now);
    expect(window.from).toBe(base.stopTime);
    expect(window.to).toBe(at(6));
    expect(window.lagSeconds).toBe(secondsBefore(at(6)));
    expect(window.gaps).toEqual([
      { afterSegment: segment(1, 6), beforeSegment: segment(1, 8), from: at(6), to: null },
    ]);
    expect(window.lastSegment).toBe(segment(1, 10));
  });

  it('closes a gap at the end of the next base backup after it', () => {
    const first = baseBackup({ start: 3, stop: 4, stopTime: at(4.5) });
    const second = baseBackup({ start: 8, stop: 9, stopTime: at(9.5) });
    const archived = [...segmentRun(1, 1, 6), ...segmentRun(1, 8, 12)];
    const window = windowOf('main', [second, first], archived, SEGMENT_SIZE, now);
    expect(window.from).toBe(first.stopTime);
    expect(window.to).toBe(at(12));
    expect(window.lagSeconds).toBe(secondsBefore(at(12)));
    expect(window.gaps).toEqual([
      {
        afterSegment: segment(1, 6),
        beforeSegment: segment(1, 8),
        from: at(6),
        to: second.stopTime,
      },
    ]);
  });

  it('keeps an open gap after the last usable run even when earlier gaps are bridged', () => {
    const first = baseBackup({ start: 3, stop: 4, stopTime: at(4.5) });
    const second = baseBackup({ start: 8, stop: 9, stopTime: at(9.5) });
    const archived = [...segmentRun(1, 1, 6), ...segmentRun(1, 8, 10), ...segmentRun(1, 13, 14)];
    const window = windowOf('main', [first, second], archived, SEGMENT_SIZE, now);
    expect(window.to).toBe(at(10));
    expect(window.gaps).toEqual([
      {
        afterSegment: segment(1, 6),
        beforeSegment: segment(1, 8),
        from: at(6),
        to: second.stopTime,
      },
      { afterSegment: segment(1, 10), beforeSegment: segment(1, 13), from: at(10), to: null },
    ]);
  });

  it('looks only at the newest timeline', () => {
    const old = baseBackup({ start: 3, stop: 4, stopTime: at(4.5) });
    const timeline1 = segmentRun(1, 1, 20);
    const timeline2 = segmentRun(2, 10, 12);
    const history = archivedWal('00000002.history', null);

    // Timeline 2 has no base backup yet: timeline 1's long window is not offered.
    const before = windowOf(
      'main',
      [old],
      [...timeline1, history, ...timeline2],
      SEGMENT_SIZE,
      now,
    );
    expect(before).toMatchObject({
      timeline: 2,
      from: null,
      to: null,
      gaps: [],
      segments: 23,
      lastSegment: segment(2, 12),
    });

    // A base backup on timeline 2: the window is timeline 2's, and timeline 1's segments 13..20
    // (written by the old primary after the switch) neither extend it nor make a gap.
    const current = baseBackup({ timeline: 2, start: 10, stop: 11, stopTime: at(11.5) });
    const after = windowOf(
      'main',
      [old, current],
      [...timeline1, history, ...timeline2],
      SEGMENT_SIZE,
      now,
    );
    expect(after).toMatchObject({
      timeline: 2,
      from: current.stopTime,
      to: at(12),
      gaps: [],
      lastSegment: segment(2, 12),
    });
  });

  it('ends at the latest known coveredUntil when the last segments have none', () => {
    const base = baseBackup({ start: 3, stop: 4, stopTime: at(4.5) });
    const partly = segmentRun(1, 1, 8, (segno) => (segno <= 6 ? at(segno) : null));
    expect(windowOf('main', [base], partly, SEGMENT_SIZE, now)).toMatchObject({
      from: base.stopTime,
      to: at(6),
      lagSeconds: secondsBefore(at(6)),
    });
    // Nothing known after the base backup's end: the window is that instant.
    const early = segmentRun(1, 1, 8, (segno) => (segno <= 2 ? at(segno) : null));
    expect(windowOf('main', [base], early, SEGMENT_SIZE, now)).toMatchObject({
      from: base.stopTime,
      to: base.stopTime,
      lagSeconds: secondsBefore(base.stopTime),
    });
    const unknown = segmentRun(1, 1, 8, () => null);
    expect(windowOf('main', [base], unknown, SEGMENT_SIZE, now)).toMatchObject({
      from: base.stopTime,
      to: base.stopTime,
    });
  });

  it('never reports a negative lag', () => {
    const base = baseBackup({ start: 3, stop: 4, stopTime: at(4.5) });
    const window = windowOf('main', [base], segmentRun(1, 1, 8), SEGMENT_SIZE, new Date(at(7)));
    expect(window.to).toBe(at(8));
    expect(window.lagSeconds).toBe(0);
  });

  it('reads segment names with the archive segment size', () => {
    const size = 64 * 1024 * 1024;
    // Segments 62..66 of 64 MiB cross from log id 0 into log id 1 (64 segments per log id).
    const archived = segmentRun(1, 62, 66, (segno) => at(segno), size);
    const base = baseBackup({ start: 63, stop: 64, stopTime: at(64.5), size });
    expect(segment(1, 64, size)).toBe('000000010000000100000000');
    expect(windowOf('main', [base], archived, size, now)).toMatchObject({
      from: base.stopTime,
      to: at(66),
      gaps: [],
    });
  });
});
