import type { BackupManifest, BackupType } from '@pgkeep/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type GfsPolicy, periodKey, selectByGfs } from './gfs-retention.js';

const idShape = /^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z-[0-9a-f]{12}$/;
let counter = 0;
/** The policy the configuration defaults to (BACKUP_GFS_DAYS … BACKUP_GFS_YEARS). */
const defaultGfsPolicy: GfsPolicy = { days: 7, weeks: 4, months: 12, years: 5 };

/** A completed backup whose id is derived from its creation time, as pgkeep makes them. */
function backup(
  createdAt: string,
  type: BackupType = 'scheduled',
  suffix?: string,
): BackupManifest {
  counter += 1;
  const iso = new Date(createdAt).toISOString();
  const id = `${iso.replace(/[:.]/g, '-')}-${suffix ?? counter.toString(16).padStart(12, '0')}`;
  if (!idShape.test(id)) throw new Error(`test builder made a bad id: ${id}`);
  return {
    manifestVersion: 1,
    id,
    filename: `backup-${id}.dump.zst`,
    size: 10,
    sha256: '0'.repeat(64),
    createdAt: iso,
    completedAt: iso,
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
    requestedBy: 'scheduler',
    label: null,
    jobId: null,
    encryption: null,
    copies: [],
    failedCopies: [],
  };
}

/** One backup a day at `time` (UTC), from `first` to `last` inclusive (dates as YYYY-MM-DD). */
function daily(first: string, last: string, time = '02:00:00.000'): BackupManifest[] {
  const list: BackupManifest[] = [];
  const end = Date.parse(`${last}T00:00:00.000Z`);
  for (let at = Date.parse(`${first}T00:00:00.000Z`); at <= end; at += 86_400_000) {
    list.push(backup(`${new Date(at).toISOString().slice(0, 10)}T${time}Z`));
  }
  return list;
}

const ids = (list: readonly BackupManifest[]) => list.map((manifest) => manifest.id);
const sortedIds = (list: readonly BackupManifest[]) => ids(list).sort();
/** The UTC creation dates of a list, sorted: readable expectations for daily backups. */
const utcDates = (list: readonly BackupManifest[]) =>
  list.map((manifest) => manifest.createdAt.slice(0, 10)).sort();
const instants = (list: readonly BackupManifest[]) =>
  list.map((manifest) => manifest.createdAt).sort();

function byDate(list: readonly BackupManifest[], date: string): BackupManifest {
  const found = list.find((manifest) => manifest.createdAt.startsWith(date));
  if (!found) throw new Error(`no backup on ${date}`);
  return found;
}

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

const policy = (days: number, weeks: number, months: number, years: number): GfsPolicy => ({
  days,
  weeks,
  months,
  years,
});

/** keep and remove split the counted backups exactly: nothing lost, nothing twice. */
function expectPartition(
  result: ReturnType<typeof selectByGfs<BackupManifest>>,
  counted: readonly BackupManifest[],
) {
  const keep = ids(result.keep);
  const remove = ids(result.remove);
  expect(new Set([...keep, ...remove]).size).toBe(keep.length + remove.length);
  expect([...keep, ...remove].sort()).toEqual(sortedIds(counted));
  expect(Object.keys(result.reasons).sort()).toEqual([...keep].sort());
}

// Daily backups at 02:00 UTC for three years: 2023-06-11 (a Sunday) to 2026-06-10 (a Wednesday,
// in ISO week 2026-W24).
const threeYears = daily('2023-06-11', '2026-06-10');

// Worked out by hand from a calendar, not by the algorithm under test.
const lastSevenDays = [
  '2026-06-04',
  '2026-06-05',
  '2026-06-06',
  '2026-06-07',
  '2026-06-08',
  '2026-06-09',
  '2026-06-10',
];
// Newest of W24 (06-10), W23 (Sun 06-07), W22 (Sun 05-31), W21 (Sun 05-24).
const lastFourWeeks = ['2026-05-24', '2026-05-31', '2026-06-07', '2026-06-10'];
// Newest of each month from July 2025 to June 2026.
const lastTwelveMonths = [
  '2025-07-31',
  '2025-08-31',
  '2025-09-30',
  '2025-10-31',
  '2025-11-30',
  '2025-12-31',
  '2026-01-31',
  '2026-02-28',
  '2026-03-31',
  '2026-04-30',
  '2026-05-31',
  '2026-06-10',
];
// Only four calendar years have a backup: 2023 to 2026.
const everyYear = ['2023-12-31', '2024-12-31', '2025-12-31', '2026-06-10'];
const union = (...lists: string[][]) => [...new Set(lists.flat())].sort();

describe('selectByGfs over three years of daily backups', () => {
  it('keeps exactly the newest of the last 7 days, 4 weeks, 12 months and 5 years by default', () => {
    expect(threeYears).toHaveLength(1096);
    const result = selectByGfs(threeYears, defaultGfsPolicy, 'UTC');
    const expected = union(lastSevenDays, lastFourWeeks, lastTwelveMonths, everyYear);
    expect(expected).toHaveLength(21);
    expect(utcDates(result.keep)).toEqual(expected);
    expect(result.remove).toHaveLength(1096 - 21);
    expectPartition(result, threeYears);
    // The oldest backup is in 2023, whose newest (12-31) stands for that year.
    expect(ids(result.remove)).toContain(byDate(threeYears, '2023-06-11').id);
  });

  it('says why each kept backup is kept', () => {
    const { reasons } = selectByGfs(threeYears, defaultGfsPolicy, 'UTC');
    const why = (date: string) => [...(reasons[byDate(threeYears, date).id] ?? [])].sort();
    expect(why('2026-06-10')).toEqual(['days', 'months', 'newest', 'weeks', 'years']);
    expect(why('2026-06-09')).toEqual(['days']);
    expect(why('2026-06-07')).toEqual(['days', 'weeks']);
    expect(why('2026-05-31')).toEqual(['months', 'weeks']);
    expect(why('2026-05-24')).toEqual(['weeks']);
    expect(why('2026-02-28')).toEqual(['months']);
    expect(why('2025-12-31')).toEqual(['months', 'years']);
    expect(why('2024-12-31')).toEqual(['years']);
    expect(why('2023-12-31')).toEqual(['years']);
    expect(reasons[byDate(threeYears, '2026-06-03').id]).toBeUndefined();
    expect(reasons[byDate(threeYears, '2025-06-30').id]).toBeUndefined();
  });

  it('turns off a rule set to zero', () => {
    const noDays = selectByGfs(threeYears, policy(0, 4, 12, 5), 'UTC');
    expect(utcDates(noDays.keep)).toEqual(union(lastFourWeeks, lastTwelveMonths, everyYear));
    expect(Object.values(noDays.reasons).flat()).not.toContain('days');

    const daysOnly = selectByGfs(threeYears, policy(7, 0, 0, 0), 'UTC');
    expect(utcDates(daysOnly.keep)).toEqual(lastSevenDays);

    const weeksOnly = selectByGfs(threeYears, policy(0, 4, 0, 0), 'UTC');
    expect(utcDates(weeksOnly.keep)).toEqual(lastFourWeeks);

    const monthsOnly = selectByGfs(threeYears, policy(0, 0, 12, 0), 'UTC');
    expect(utcDates(monthsOnly.keep)).toEqual(lastTwelveMonths);

    const yearsOnly = selectByGfs(threeYears, policy(0, 0, 0, 5), 'UTC');
    expect(utcDates(yearsOnly.keep)).toEqual(everyYear);
    expectPartition(yearsOnly, threeYears);
  });

  it('keeps only the newest backup when every rule is zero', () => {
    const result = selectByGfs(threeYears, policy(0, 0, 0, 0), 'UTC');
    const newest = byDate(threeYears, '2026-06-10');
    expect(ids(result.keep)).toEqual([newest.id]);
    expect(result.reasons).toEqual({ [newest.id]: ['newest'] });
    expect(result.remove).toHaveLength(1095);
  });

  it('gives the same answer whatever the input order, and leaves the input as it was', () => {
    const expected = selectByGfs(threeYears, defaultGfsPolicy, 'UTC');
    for (const seed of [1, 7, 42, 2026]) {
      const input = shuffled(threeYears, seed);
      const before = ids(input);
      const result = selectByGfs(input, defaultGfsPolicy, 'UTC');
      expect(sortedIds(result.keep)).toEqual(sortedIds(expected.keep));
      expect(sortedIds(result.remove)).toEqual(sortedIds(expected.remove));
      expect(result.reasons).toEqual(expected.reasons);
      expect(ids(input)).toEqual(before);
    }
  });
});

describe('selectByGfs periods', () => {
  it('keeps the later of two backups a day', () => {
    const all = [
      ...daily('2025-02-01', '2025-03-31', '06:00:00.000'),
      ...daily('2025-02-01', '2025-03-31', '18:00:00.000'),
    ];
    // 2025-03-31 is a Monday (W14); 2025-03-30 is the Sunday ending W13.
    const result = selectByGfs(all, policy(3, 2, 2, 0), 'UTC');
    expect(instants(result.keep)).toEqual([
      '2025-02-28T18:00:00.000Z',
      '2025-03-29T18:00:00.000Z',
      '2025-03-30T18:00:00.000Z',
      '2025-03-31T18:00:00.000Z',
    ]);
    expect(result.remove).toHaveLength(118 - 4);
    expectPartition(result, all);
  });

  it('counts only days that have a backup: after a 200-day pause it still keeps 7 daily ones', () => {
    const before = daily('2025-01-01', '2025-03-31');
    const afterPause = backup('2025-10-17T02:00:00.000Z');
    const result = selectByGfs([...before, afterPause], policy(7, 0, 0, 0), 'UTC');
    expect(utcDates(result.keep)).toEqual([
      '2025-03-26',
      '2025-03-27',
      '2025-03-28',
      '2025-03-29',
      '2025-03-30',
      '2025-03-31',
      '2025-10-17',
    ]);
  });

  describe('with a clock far past the last backup', () => {
    afterEach(() => {
      vi.useRealTimers();
    });

    it('still keeps 7 daily backups when the last one was 200 days ago', () => {
      vi.useFakeTimers();
      vi.setSystemTime(new Date('2025-10-17T12:00:00.000Z'));
      const stale = daily('2025-01-01', '2025-03-31');
      const result = selectByGfs(stale, policy(7, 4, 0, 0), 'UTC');
      // 2025-03-31 is Monday of W14; W13, W12 and W11 end on Sundays 03-30, 03-23, 03-16.
      expect(utcDates(result.keep)).toEqual([
        '2025-03-16',
        '2025-03-23',
        '2025-03-25',
        '2025-03-26',
        '2025-03-27',
        '2025-03-28',
        '2025-03-29',
        '2025-03-30',
        '2025-03-31',
      ]);
    });
  });

  it('counts only weeks that have a backup', () => {
    // Tuesday and Friday of 2026-W02, W03, then nothing for three weeks, then W07 and W08.
    const all = [
      '2026-01-06',
      '2026-01-09',
      '2026-01-13',
      '2026-01-16',
      '2026-02-10',
      '2026-02-13',
      '2026-02-17',
      '2026-02-20',
    ].map((date) => backup(`${date}T02:00:00.000Z`));
    const result = selectByGfs(all, policy(0, 3, 0, 0), 'UTC');
    expect(utcDates(result.keep)).toEqual(['2026-01-16', '2026-02-13', '2026-02-20']);
    expect(utcDates(result.remove)).toEqual([
      '2026-01-06',
      '2026-01-09',
      '2026-01-13',
      '2026-02-10',
      '2026-02-17',
    ]);
  });

  it('keeps the newest backup of each month, skipping months without one', () => {
    const all = ['01', '02', '03', '05', '06'].flatMap((month) =>
      ['01', '15', '28'].map((dayOfMonth) => backup(`2026-${month}-${dayOfMonth}T02:00:00.000Z`)),
    );
    const result = selectByGfs(all, policy(0, 0, 4, 0), 'UTC');
    expect(utcDates(result.keep)).toEqual(['2026-02-28', '2026-03-28', '2026-05-28', '2026-06-28']);
    expect(result.remove).toHaveLength(15 - 4);
  });

  it('keeps the newest backup of each year', () => {
    const all = ['2022', '2023', '2024', '2025', '2026'].flatMap((year) =>
      ['01-10', '07-04', '11-30'].map((date) => backup(`${year}-${date}T02:00:00.000Z`)),
    );
    const result = selectByGfs(all, policy(0, 0, 0, 3), 'UTC');
    expect(utcDates(result.keep)).toEqual(['2024-11-30', '2025-11-30', '2026-11-30']);
    expect(utcDates(result.remove)).toContain('2024-07-04');
  });

  it('treats 2026-12-31 and 2027-01-01 as one ISO week', () => {
    const all = ['2026-12-28', '2026-12-31', '2027-01-01', '2027-01-04'].map((date) =>
      backup(`${date}T12:00:00.000Z`),
    );
    const result = selectByGfs(all, policy(0, 2, 0, 0), 'UTC');
    expect(utcDates(result.keep)).toEqual(['2027-01-01', '2027-01-04']);
    expect(utcDates(result.remove)).toEqual(['2026-12-28', '2026-12-31']);
  });

  it('breaks a tie in creation time by id, the same way whatever the order', () => {
    const same = '2026-03-10T02:00:00.000Z';
    const a = backup(same, 'scheduled', 'aaaaaaaaaaaa');
    const b = backup(same, 'manual', 'bbbbbbbbbbbb');
    const c = backup(same, 'scheduled', 'cccccccccccc');
    const older = backup('2026-03-09T02:00:00.000Z');
    for (const input of [
      [a, b, c, older],
      [c, older, a, b],
      [older, b, c, a],
    ]) {
      const result = selectByGfs(input, policy(2, 0, 0, 0), 'UTC');
      expect(sortedIds(result.keep)).toEqual(sortedIds([c, older]));
      expect(sortedIds(result.remove)).toEqual(sortedIds([a, b]));
      expect(result.reasons[c.id]).toContain('newest');
    }
  });
});

describe('selectByGfs backup types', () => {
  it('counts manual and scheduled backups alike', () => {
    const morning = backup('2026-03-05T06:00:00.000Z', 'scheduled');
    const evening = backup('2026-03-05T20:00:00.000Z', 'manual');
    const dayBefore = backup('2026-03-04T20:00:00.000Z', 'manual');
    const result = selectByGfs([morning, dayBefore, evening], policy(2, 0, 0, 0), 'UTC');
    expect(sortedIds(result.keep)).toEqual(sortedIds([evening, dayBefore]));
    expect(ids(result.remove)).toEqual([morning.id]);
  });

  it('keeps and removes nothing when there is nothing to count', () => {
    expect(selectByGfs([], defaultGfsPolicy, 'UTC')).toEqual({ keep: [], remove: [], reasons: {} });
  });
});

describe('selectByGfs time zones', () => {
  // 2026-03-10T23:30Z is 03-11 08:30 in Tokyo and 03-10 19:30 in New York (EDT).
  const earlyOn10th = backup('2026-03-10T10:00:00.000Z');
  const lateOn10thUtc = backup('2026-03-10T23:30:00.000Z');
  const on11th = backup('2026-03-11T10:00:00.000Z');
  const all = [earlyOn10th, lateOn10thUtc, on11th];

  it.each([
    ['UTC', [on11th, lateOn10thUtc], [earlyOn10th]],
    ['America/New_York', [on11th, lateOn10thUtc], [earlyOn10th]],
    ['Asia/Tokyo', [on11th, earlyOn10th], [lateOn10thUtc]],
  ])('groups days in %s', (timeZone, keep, remove) => {
    const result = selectByGfs(all, policy(2, 0, 0, 0), timeZone);
    expect(sortedIds(result.keep)).toEqual(sortedIds(keep));
    expect(sortedIds(result.remove)).toEqual(sortedIds(remove));
  });

  it('groups days across the Lisbon spring-forward', () => {
    // 2026-03-29 in Lisbon: 00:30 WET is 00:30Z, 23:30 WEST is 22:30Z; 23:15Z is 03-30 00:15.
    const justAfterMidnight = backup('2026-03-29T00:30:00.000Z');
    const lateEvening = backup('2026-03-29T22:30:00.000Z');
    const nextDay = backup('2026-03-29T23:15:00.000Z');
    const list = [justAfterMidnight, lateEvening, nextDay];
    const lisbon = selectByGfs(list, policy(2, 0, 0, 0), 'Europe/Lisbon');
    expect(sortedIds(lisbon.keep)).toEqual(sortedIds([nextDay, lateEvening]));
    expect(ids(lisbon.remove)).toEqual([justAfterMidnight.id]);
    // In UTC all three fall on 03-29.
    expect(ids(selectByGfs(list, policy(2, 0, 0, 0), 'UTC').keep)).toEqual([nextDay.id]);
  });

  it('takes months in the time zone: 02:00 UTC is the evening before in New York', () => {
    const list = daily('2026-01-01', '2026-06-10');
    const newYork = selectByGfs(list, policy(0, 0, 3, 0), 'America/New_York');
    expect(instants(newYork.keep)).toEqual([
      '2026-05-01T02:00:00.000Z',
      '2026-06-01T02:00:00.000Z',
      '2026-06-10T02:00:00.000Z',
    ]);
    const utc = selectByGfs(list, policy(0, 0, 3, 0), 'UTC');
    expect(utcDates(utc.keep)).toEqual(['2026-04-30', '2026-05-31', '2026-06-10']);
  });

  it('takes ISO weeks in the time zone: Sunday 23:30 UTC is Monday in Tokyo', () => {
    const mondayW10 = backup('2026-03-02T12:00:00.000Z');
    const sundayNight = backup('2026-03-08T23:30:00.000Z');
    const mondayW11 = backup('2026-03-09T12:00:00.000Z');
    const list = [mondayW10, sundayNight, mondayW11];
    const utc = selectByGfs(list, policy(0, 2, 0, 0), 'UTC');
    expect(sortedIds(utc.keep)).toEqual(sortedIds([mondayW11, sundayNight]));
    const tokyo = selectByGfs(list, policy(0, 2, 0, 0), 'Asia/Tokyo');
    expect(sortedIds(tokyo.keep)).toEqual(sortedIds([mondayW11, mondayW10]));
  });

  it('takes years in the time zone: New Year’s Eve 23:30 UTC is already next year in Tokyo', () => {
    const midYear = backup('2025-06-01T12:00:00.000Z');
    const newYearsEve = backup('2025-12-31T23:30:00.000Z');
    const february = backup('2026-02-01T12:00:00.000Z');
    const list = [midYear, newYearsEve, february];
    const tokyo = selectByGfs(list, policy(0, 0, 0, 2), 'Asia/Tokyo');
    expect(sortedIds(tokyo.keep)).toEqual(sortedIds([february, midYear]));
    const newYork = selectByGfs(list, policy(0, 0, 0, 2), 'America/New_York');
    expect(sortedIds(newYork.keep)).toEqual(sortedIds([february, newYearsEve]));
  });
});

describe('periodKey', () => {
  const at = (iso: string) => new Date(iso);

  it('names the local day, ISO week, month and year', () => {
    const instant = at('2026-06-10T02:00:00.000Z');
    expect(periodKey(instant, 'days', 'UTC')).toBe('2026-06-10');
    expect(periodKey(instant, 'weeks', 'UTC')).toBe('2026-W24');
    expect(periodKey(instant, 'months', 'UTC')).toBe('2026-06');
    expect(periodKey(instant, 'years', 'UTC')).toBe('2026');
  });

  it('puts 23:30 UTC on the next day in Tokyo and on the same day in New York', () => {
    const instant = at('2026-03-10T23:30:00.000Z');
    expect(periodKey(instant, 'days', 'UTC')).toBe('2026-03-10');
    expect(periodKey(instant, 'days', 'Asia/Tokyo')).toBe('2026-03-11');
    expect(periodKey(instant, 'days', 'America/New_York')).toBe('2026-03-10');
  });

  it.each([
    // Lisbon, spring-forward 2026-03-29 (01:00 WET → 02:00 WEST).
    ['2026-03-28T23:30:00.000Z', 'Europe/Lisbon', '2026-03-28'],
    ['2026-03-29T00:30:00.000Z', 'Europe/Lisbon', '2026-03-29'],
    ['2026-03-29T22:30:00.000Z', 'Europe/Lisbon', '2026-03-29'],
    ['2026-03-29T23:15:00.000Z', 'Europe/Lisbon', '2026-03-30'],
    // Lisbon, fall-back 2026-10-25 (02:00 WEST → 01:00 WET).
    ['2026-10-24T22:30:00.000Z', 'Europe/Lisbon', '2026-10-24'],
    ['2026-10-24T23:30:00.000Z', 'Europe/Lisbon', '2026-10-25'],
    ['2026-10-25T23:30:00.000Z', 'Europe/Lisbon', '2026-10-25'],
    ['2026-10-26T00:30:00.000Z', 'Europe/Lisbon', '2026-10-26'],
    // New York, spring-forward 2026-03-08 (02:00 EST → 03:00 EDT).
    ['2026-03-08T04:59:00.000Z', 'America/New_York', '2026-03-07'],
    ['2026-03-08T05:30:00.000Z', 'America/New_York', '2026-03-08'],
    ['2026-03-09T03:30:00.000Z', 'America/New_York', '2026-03-08'],
    ['2026-03-09T04:00:00.000Z', 'America/New_York', '2026-03-09'],
    // New York, fall-back 2026-11-01 (02:00 EDT → 01:00 EST).
    ['2026-11-01T03:59:00.000Z', 'America/New_York', '2026-10-31'],
    ['2026-11-01T04:30:00.000Z', 'America/New_York', '2026-11-01'],
    ['2026-11-02T04:30:00.000Z', 'America/New_York', '2026-11-01'],
    ['2026-11-02T05:00:00.000Z', 'America/New_York', '2026-11-02'],
  ])('puts %s in %s on local day %s', (instant, timeZone, day) => {
    expect(periodKey(at(instant), 'days', timeZone)).toBe(day);
  });

  it.each([
    ['2026-01-01', '2026-W01'],
    ['2025-12-29', '2026-W01'],
    ['2026-03-08', '2026-W10'],
    ['2026-03-09', '2026-W11'],
    ['2026-12-31', '2026-W53'],
    ['2027-01-01', '2026-W53'],
    ['2027-01-03', '2026-W53'],
    ['2027-01-04', '2027-W01'],
    ['2024-12-29', '2024-W52'],
    ['2024-12-30', '2025-W01'],
    ['2021-01-03', '2020-W53'],
  ])('puts %s in ISO week %s', (date, week) => {
    expect(periodKey(at(`${date}T12:00:00.000Z`), 'weeks', 'UTC')).toBe(week);
  });

  it('takes the ISO week of the local date', () => {
    // Sunday 2027-01-03 23:30 UTC is Monday 2027-01-04 in Tokyo.
    const instant = at('2027-01-03T23:30:00.000Z');
    expect(periodKey(instant, 'weeks', 'UTC')).toBe('2026-W53');
    expect(periodKey(instant, 'weeks', 'Asia/Tokyo')).toBe('2027-W01');
  });

  it('takes the month and year of the local date', () => {
    const instant = at('2026-12-31T23:30:00.000Z');
    expect(periodKey(instant, 'months', 'UTC')).toBe('2026-12');
    expect(periodKey(instant, 'months', 'Asia/Tokyo')).toBe('2027-01');
    expect(periodKey(instant, 'years', 'Asia/Tokyo')).toBe('2027');
    expect(periodKey(instant, 'years', 'America/New_York')).toBe('2026');
  });
});
