import { AppError } from '@pgkeep/core';
import { describe, expect, it } from 'vitest';
import { parseRange } from './download-service.js';

function refused(header: string, size: number): string | undefined {
  try {
    parseRange(header, size);
  } catch (error) {
    expect(error).toBeInstanceOf(AppError);
    return (error as AppError).code;
  }
  return undefined;
}

describe('parseRange', () => {
  it('serves the whole file without a header or with one it does not understand', () => {
    expect(parseRange(undefined, 1000)).toBeUndefined();
    for (const header of ['bytes=0-9,20-29', 'items=0-9', 'bytes=a-b', 'bytes=-', 'bytes 0-9']) {
      expect(parseRange(header, 1000)).toBeUndefined();
    }
  });

  it('reads first-last, first- and the -suffix forms, clamped to the file', () => {
    expect(parseRange('bytes=10-99', 1000)).toEqual({ start: 10, end: 99 });
    expect(parseRange('bytes=990-', 1000)).toEqual({ start: 990, end: 999 });
    expect(parseRange('bytes=990-5000', 1000)).toEqual({ start: 990, end: 999 });
    expect(parseRange('bytes=-100', 1000)).toEqual({ start: 900, end: 999 });
    expect(parseRange('bytes=-5000', 1000)).toEqual({ start: 0, end: 999 });
    expect(parseRange(' bytes=0-0 ', 1000)).toEqual({ start: 0, end: 0 });
  });

  it('refuses a range outside the file or backwards with RANGE_NOT_SATISFIABLE', () => {
    expect(refused('bytes=1000-', 1000)).toBe('RANGE_NOT_SATISFIABLE');
    expect(refused('bytes=50-10', 1000)).toBe('RANGE_NOT_SATISFIABLE');
    expect(refused('bytes=-0', 1000)).toBe('RANGE_NOT_SATISFIABLE');
    expect(refused('bytes=0-', 0)).toBe('RANGE_NOT_SATISFIABLE');
    // Numbers too long to be a file offset are not a range at all.
    expect(parseRange('bytes=1234567890123456-', 1000)).toBeUndefined();
  });
});
