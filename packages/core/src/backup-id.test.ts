import { describe, expect, it } from 'vitest';
import { isBackupId, newBackupId } from './backup-id.js';

const when = new Date('2026-01-22T16:30:00.000Z');

describe('newBackupId', () => {
  it("keeps the panel's timestamp shape plus a 12-hex suffix", () => {
    const id = newBackupId(when);
    expect(id).toMatch(/^2026-01-22T16-30-00-000Z-[0-9a-f]{12}$/);
    expect(isBackupId(id)).toBe(true);
  });

  it('encodes milliseconds and uses the current time by default', () => {
    expect(newBackupId(new Date('2026-12-31T23:59:59.987Z'))).toMatch(
      /^2026-12-31T23-59-59-987Z-[0-9a-f]{12}$/,
    );
    const before = new Date();
    const id = newBackupId();
    expect(id.slice(0, 10)).toBe(before.toISOString().slice(0, 10));
    expect(isBackupId(id)).toBe(true);
  });

  it('gives two backups started in the same millisecond different ids', () => {
    const ids = new Set(Array.from({ length: 10 }, () => newBackupId(when)));
    expect(ids.size).toBe(10);
  });

  it('is unique across 10,000 calls with the same Date', () => {
    const ids = new Set<string>();
    for (let i = 0; i < 10_000; i++) ids.add(newBackupId(when));
    expect(ids.size).toBe(10_000);
  });
});

describe('isBackupId', () => {
  it('accepts the current shape and the legacy panel shape without suffix', () => {
    expect(isBackupId('2026-01-22T16-30-00-000Z-a1b2c3d4e5f6')).toBe(true);
    expect(isBackupId('2026-01-22T16-30-00-000Z')).toBe(true);
  });

  it.each([
    ['a path traversal', '../../etc/passwd'],
    ['the empty string', ''],
    ['a 10 KB string', '2'.repeat(10_240)],
    ['a valid id padded to 10 KB', `2026-01-22T16-30-00-000Z-a1b2c3d4e5f6${'0'.repeat(10_240)}`],
    ['an id with a slash', '2026-01-22T16-30-00-000Z/a1b2c3d4e5f6'],
    ['an id behind a directory', 'x/2026-01-22T16-30-00-000Z'],
    ['an encoded dot', '%2e%2e/2026-01-22T16-30-00-000Z'],
    ['an id with %2e', '2026-01-22T16-30-00-000Z%2e'],
    ['a trailing newline', '2026-01-22T16-30-00-000Z\n'],
    ['a trailing newline after the suffix', '2026-01-22T16-30-00-000Z-a1b2c3d4e5f6\n'],
    ['a leading space', ' 2026-01-22T16-30-00-000Z'],
    ['an ISO timestamp with colons', '2026-01-22T16:30:00.000Z'],
    ['an upper-case suffix', '2026-01-22T16-30-00-000Z-A1B2C3D4E5F6'],
    ['a short suffix', '2026-01-22T16-30-00-000Z-a1b2c3d4e5f'],
    ['a long suffix', '2026-01-22T16-30-00-000Z-a1b2c3d4e5f6a'],
    ['a suffix that is not hex', '2026-01-22T16-30-00-000Z-ghijklmnopqr'],
    ['a file name', 'backup-2026-01-22T16-30-00-000Z.dump'],
  ])('rejects %s', (_label, value) => {
    expect(isBackupId(value)).toBe(false);
  });
});
