import { describe, expect, it } from 'vitest';
import {
  formatLsn,
  isHistoryName,
  isSegmentName,
  parseLsn,
  parseSegmentName,
  segmentEnd,
  segmentName,
  segmentOf,
} from './wal-position.js';

const MiB = 1024 * 1024;

/** The name PostgreSQL gives the segment holding `lsn` (XLByteToSeg, then XLogFileName). */
const nameOf = (timeline: number, lsn: string, size: number) =>
  segmentName(timeline, segmentOf(parseLsn(lsn), size), size);

describe('LSNs', () => {
  it('reads and prints them as PostgreSQL does, round trip', () => {
    expect(parseLsn('0/3000148')).toBe(0x3000148n);
    // SELECT '16/B374D848'::pg_lsn - '0/0' gives 97500059720.
    expect(parseLsn('16/B374D848')).toBe(97_500_059_720n);
    expect(parseLsn('FFFFFFFF/FFFFFFFF')).toBe(2n ** 64n - 1n);
    for (const text of ['0/0', '0/3000148', '16/B374D848', 'FFFFFFFF/FFFFFFFF', '1/0']) {
      expect(formatLsn(parseLsn(text))).toBe(text);
    }
    // Lower case is read; printing is always upper case and unpadded, as pg_lsn prints it.
    expect(formatLsn(parseLsn('16/b374d848'))).toBe('16/B374D848');
    expect(formatLsn(parseLsn('00000000/03000148'))).toBe('0/3000148');
  });

  it('refuses what is not an LSN', () => {
    for (const text of [
      '',
      '0',
      '0/',
      '/0',
      '0/0/0',
      '123456789/0',
      '0/123456789',
      'G/0',
      '-1/0',
      '0x1/0',
      ' 0/0',
      '0/0 ',
      '0/0\n',
      '0:0',
    ]) {
      expect(() => parseLsn(text), JSON.stringify(text)).toThrow(/not an LSN/);
    }
  });
});

describe('segment names of 16 MiB segments', () => {
  const size = 16 * MiB;

  it('are the names PostgreSQL gives (pg_walfile_name)', () => {
    expect(nameOf(1, '0/3000148', size)).toBe('000000010000000000000003');
    expect(nameOf(1, '16/B374D848', size)).toBe('0000000100000016000000B3');
    // The first byte of a segment is in that segment (XLByteToSeg, not XLByteToPrevSeg).
    expect(nameOf(1, '1/0', size)).toBe('000000010000000100000000');
    expect(nameOf(1, '0/FF000000', size)).toBe('0000000100000000000000FF');
    expect(nameOf(1, '0/FFFFFFFF', size)).toBe('0000000100000000000000FF');
    expect(nameOf(2, '0/3000148', size)).toBe('000000020000000000000003');
    expect(nameOf(0x1a, '0/0', size)).toBe('0000001A0000000000000000');
  });

  it('end where the next segment starts', () => {
    expect(formatLsn(segmentEnd(3n, size))).toBe('0/4000000');
    expect(formatLsn(segmentEnd(255n, size))).toBe('1/0');
    expect(segmentOf(segmentEnd(255n, size), size)).toBe(256n);
    expect(segmentOf(segmentEnd(255n, size) - 1n, size)).toBe(255n);
  });
});

describe('segment names of other segment sizes (4 GiB / size segments per log id)', () => {
  it('64 MiB: 64 segments per log id', () => {
    const size = 64 * MiB;
    expect(nameOf(1, '0/3000148', size)).toBe('000000010000000000000000');
    expect(nameOf(1, '0/FC000000', size)).toBe('00000001000000000000003F');
    expect(nameOf(1, '1/0', size)).toBe('000000010000000100000000');
    expect(nameOf(1, '16/B374D848', size)).toBe('00000001000000160000002C');
    expect(segmentName(1, 64n, size)).toBe('000000010000000100000000');
    expect(segmentName(1, 63n, size)).toBe('00000001000000000000003F');
  });

  it('1 MiB: 4096 segments per log id', () => {
    const size = MiB;
    expect(nameOf(1, '0/3000148', size)).toBe('000000010000000000000030');
    expect(nameOf(1, '0/FFF00000', size)).toBe('000000010000000000000FFF');
    expect(nameOf(1, '1/0', size)).toBe('000000010000000100000000');
    expect(nameOf(1, '16/B374D848', size)).toBe('000000010000001600000B37');
    expect(segmentName(1, 4096n, size)).toBe('000000010000000100000000');
  });
});

describe('parseSegmentName', () => {
  it('inverts segmentName for every segment size', () => {
    for (const size of [MiB, 16 * MiB, 64 * MiB, 1024 * MiB]) {
      const perId = 0x100000000n / BigInt(size);
      const last = 2n ** 64n / BigInt(size) - 1n;
      for (const segno of [0n, 1n, perId - 1n, perId, perId + 1n, 22n * perId + 3n, last]) {
        for (const timeline of [1, 2, 0xffffffff]) {
          const name = segmentName(timeline, segno, size);
          expect(name).toMatch(/^[0-9A-F]{24}$/);
          expect(parseSegmentName(name, size)).toEqual({ timeline, segno });
        }
      }
    }
  });

  it('reads the segment an LSN is in back from its name', () => {
    const size = 16 * MiB;
    const lsn = parseLsn('16/B374D848');
    const { timeline, segno } = parseSegmentName(nameOf(3, '16/B374D848', size), size);
    expect(timeline).toBe(3);
    expect(segno).toBe(segmentOf(lsn, size));
    expect(segmentEnd(segno, size) > lsn).toBe(true);
    expect(segmentEnd(segno - 1n, size) <= lsn).toBe(true);
  });

  it('refuses names that are not segment names', () => {
    for (const name of [
      '',
      '00000001000000000000000',
      '0000000100000000000000030',
      '00000001000000000000000g',
      '0000000100000000000000ff',
      '00000002.history',
      '000000010000000000000003.partial',
    ]) {
      expect(() => parseSegmentName(name, 16 * MiB), name).toThrow(/not a WAL segment name/);
    }
  });

  it('refuses a segment part PostgreSQL never writes for that segment size', () => {
    // 16 MiB: segments 00..FF of each log id; `…00000100` would alias `…0000000100000000`.
    expect(() => parseSegmentName('000000010000000000000100', 16 * MiB)).toThrow(
      /not a WAL segment name/,
    );
    expect(() => parseSegmentName('000000010000000000000040', 64 * MiB)).toThrow(
      /not a WAL segment name/,
    );
    expect(parseSegmentName('000000010000000000000100', MiB).segno).toBe(256n);
  });
});

describe('isSegmentName and isHistoryName', () => {
  it('tell segments, history files and anything else apart', () => {
    expect(isSegmentName('000000010000000000000003')).toBe(true);
    expect(isSegmentName('000000010000000000000003.partial')).toBe(false);
    expect(isSegmentName('00000002.history')).toBe(false);
    expect(isHistoryName('00000002.history')).toBe(true);
    expect(isHistoryName('0000000A.history')).toBe(true);
    expect(isHistoryName('00000002.history.tmp')).toBe(false);
    expect(isHistoryName('000000010000000000000003')).toBe(false);
  });
});
