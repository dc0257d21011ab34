import { describe, expect, it } from 'vitest';
import { parseToolVersion, pgDumpSupportsServer } from './pg-tools.js';

describe('parseToolVersion', () => {
  it.each([
    ['pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)', '15.20', 15],
    ['pg_dump (PostgreSQL) 16.1', '16.1', 16],
    ['psql (PostgreSQL) 16.1 (Ubuntu 16.1-1.pgdg22.04+1)\n', '16.1', 16],
    ['pg_restore (PostgreSQL) 17beta1', '17', 17],
    ['pg_dump (PostgreSQL) 17devel', '17', 17],
    ['pg_dump (PostgreSQL) 18rc1 (Homebrew)', '18', 18],
  ])('reads %j', (output, version, major) => {
    expect(parseToolVersion(output)).toEqual({ version, major });
  });

  it.each([
    '',
    'garbage',
    'pg_dump: command not found',
    'pg_dump (PostgreSQL)',
    'pg_dump (PostgreSQL) beta',
  ])('gives undefined for %j', (output) => {
    expect(parseToolVersion(output)).toBeUndefined();
  });
});

describe('pgDumpSupportsServer', () => {
  it('needs a pg_dump at least as new as the server major', () => {
    expect(pgDumpSupportsServer(15, 150020)).toBe(true);
    expect(pgDumpSupportsServer(14, 150020)).toBe(false);
    expect(pgDumpSupportsServer(16, 150020)).toBe(true);
    expect(pgDumpSupportsServer(17, 170000)).toBe(true);
    expect(pgDumpSupportsServer(16, 170002)).toBe(false);
  });
});
