import type { BackupManifest, BackupType } from '@pgkeep/core';
import { describe, expect, it } from 'vitest';
import { selectByKeepLast } from './keep-last.js';

let counter = 0;

function backup(createdAt: string, type: BackupType = 'manual', suffix?: string): BackupManifest {
  counter += 1;
  const stamp = createdAt.replace(/[:.]/g, '-');
  const id = `${stamp}-${suffix ?? counter.toString(16).padStart(12, '0')}`;
  return {
    manifestVersion: 1,
    id,
    filename: `backup-${id}.dump.zst`,
    size: 10,
    sha256: '0'.repeat(64),
    createdAt,
    completedAt: createdAt,
    durationMs: 0,
    type,
    status: 'completed',
    format: 'custom',
    compression: 'zstd',
    tables: null,
    database: 'app',
    serverVersion: '16.1',
    pgDumpVersion: '16.1',
    rowCounts: {},
    requestedBy: 'admin',
    label: null,
    jobId: null,
    encryption: null,
    copies: [],
    failedCopies: [],
  };
}

const day = (n: number) => `2026-01-${String(n).padStart(2, '0')}T02:00:00.000Z`;
const ids = (list: readonly BackupManifest[]) => list.map((manifest) => manifest.id);

function shuffled<T>(list: readonly T[], seed: number): T[] {
  // A small deterministic shuffle so that a failure can be reproduced.
  const copy = [...list];
  let state = seed;
  for (let i = copy.length - 1; i > 0; i--) {
    state = (state * 1_103_515_245 + 12_345) % 2_147_483_648;
    const j = state % (i + 1);
    [copy[i], copy[j]] = [copy[j] as T, copy[i] as T];
  }
  return copy;
}

describe('selectByKeepLast', () => {
  it('keeps the newest N manual and scheduled backups and removes the rest', () => {
    const all = [1, 2, 3, 4, 5].map((n) => backup(day(n), n % 2 ? 'manual' : 'scheduled'));
    const { keep, remove } = selectByKeepLast(all, 3);
    expect(ids(keep)).toEqual(ids([all[4], all[3], all[2]] as BackupManifest[]));
    expect(ids(remove)).toEqual(ids([all[1], all[0]] as BackupManifest[]));
  });

  it('removes nothing when there are at most N backups', () => {
    const all = [backup(day(1)), backup(day(2))];
    const { keep, remove } = selectByKeepLast(all, 30);
    expect(ids(keep)).toEqual(ids([all[1], all[0]] as BackupManifest[]));
    expect(remove).toEqual([]);
  });

  it.each([0, -5])('always keeps the newest backup, even with keepLast %d', (keepLast) => {
    const all = [backup(day(1)), backup(day(3)), backup(day(2))];
    const { keep, remove } = selectByKeepLast(all, keepLast);
    expect(ids(keep)).toEqual([all[1]?.id]);
    expect(ids(remove)).toEqual(ids([all[2], all[0]] as BackupManifest[]));
  });

  it('breaks ties in createdAt by id, newest id first', () => {
    const same = '2026-01-10T02:00:00.000Z';
    const a = backup(same, 'manual', '00000a');
    const b = backup(same, 'scheduled', '00000b');
    const c = backup(same, 'manual', '00000c');
    const { keep, remove } = selectByKeepLast([a, c, b], 2);
    expect(ids(keep)).toEqual([c.id, b.id]);
    expect(ids(remove)).toEqual([a.id]);
  });

  it('gives the same answer whatever the input order, and does not reorder the input', () => {
    const all = [
      ...[1, 2, 3, 4, 5, 6, 7, 8].map((n) => backup(day(n), n % 3 ? 'manual' : 'scheduled')),
      backup(day(6), 'manual', 'ffffff'),
    ];
    const expected = selectByKeepLast(all, 4);
    expect(expected.keep).toHaveLength(4);
    expect(expected.remove).toHaveLength(5);
    for (const seed of [1, 2, 3, 42, 1234]) {
      const input = shuffled(all, seed);
      const before = ids(input);
      const result = selectByKeepLast(input, 4);
      expect(ids(result.keep)).toEqual(ids(expected.keep));
      expect(ids(result.remove)).toEqual(ids(expected.remove));
      expect(ids(input)).toEqual(before);
    }
  });

  it('orders by createdAt, not by id', () => {
    // An id whose timestamp disagrees with createdAt: createdAt decides.
    const olderId = backup('2026-01-05T00:00:00.000Z', 'manual', 'aaaaaa');
    const newer = { ...olderId, id: '2026-01-01T00-00-00-000Z-bbbbbbbbbbbb' };
    newer.filename = `backup-${newer.id}.dump.zst`;
    newer.createdAt = '2026-01-06T00:00:00.000Z';
    const { keep } = selectByKeepLast([olderId, newer], 1);
    expect(ids(keep)).toEqual([newer.id]);
  });
});

describe('selectByKeepLast ordering by time', () => {
  it('compares times, not text: a timestamp without milliseconds is older than one with', () => {
    const older = backup('2026-01-22T16:30:00Z', 'manual', 'aaaaaaaaaaaa');
    const newer = backup('2026-01-22T16:30:00.500Z', 'manual', 'bbbbbbbbbbbb');
    const { keep, remove } = selectByKeepLast([older, newer], 1);
    expect(ids(keep)).toEqual([newer.id]);
    expect(ids(remove)).toEqual([older.id]);
  });

  it('treats a keepLast that is not a number as 1, never as "delete everything"', () => {
    const list = [backup(day(1)), backup(day(2))];
    expect(selectByKeepLast(list, Number.NaN).keep).toHaveLength(1);
  });
});
