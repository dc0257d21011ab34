import type { BackupManifest } from '@pgkeep/core';
import { describe, expect, it } from 'vitest';
import {
  assertRoom,
  backupSpaceNeeded,
  directoryScratchNeeded,
  previousOfKind,
  scratchSpaceNeeded,
} from './free-space.js';

let counter = 0;

function backup(createdAt: string, overrides: Partial<BackupManifest> = {}): BackupManifest {
  counter += 1;
  const id = `${createdAt.replace(/[:.]/g, '-')}-${counter.toString(16).padStart(12, '0')}`;
  const size = overrides.size ?? 1_000;
  return {
    manifestVersion: 2,
    id,
    filename: `backup-${id}.dump.zst`,
    size,
    sha256: '0'.repeat(64),
    createdAt,
    completedAt: createdAt,
    durationMs: 0,
    type: 'manual',
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
    copies: [
      { destination: 'local', location: 'x', size, sha256: '0'.repeat(64), writtenAt: createdAt },
    ],
    failedCopies: [],
    ...overrides,
  };
}

const full = { database: 'app', tables: null, format: 'custom', compression: 'zstd' } as const;

describe('previousOfKind', () => {
  it('is the newest backup of the same database, tables, format and compression', () => {
    const older = backup('2026-01-01T00:00:00.000Z', { size: 100 });
    const newer = backup('2026-01-02T00:00:00.000Z', { size: 200 });
    const otherKinds = [
      backup('2026-01-03T00:00:00.000Z', { tables: ['public.User'] }),
      backup('2026-01-03T00:00:01.000Z', { compression: 'gzip' }),
      backup('2026-01-03T00:00:02.000Z', { format: 'plain' }),
      backup('2026-01-03T00:00:03.000Z', { database: 'other' }),
    ];
    expect(previousOfKind([older, ...otherKinds, newer], full)?.id).toBe(newer.id);
  });

  it('matches table lists whatever their order', () => {
    const tables = backup('2026-01-01T00:00:00.000Z', { tables: ['public.B', 'public.A'] });
    expect(previousOfKind([tables], { ...full, tables: ['public.A', 'public.B'] })?.id).toBe(
      tables.id,
    );
    expect(previousOfKind([tables], { ...full, tables: ['public.A'] })).toBeUndefined();
  });

  it('ignores backups without a local copy', () => {
    const remote = backup('2026-01-01T00:00:00.000Z', {
      copies: [
        {
          destination: 'offsite',
          location: 's3://b/k',
          size: 1_000,
          sha256: '0'.repeat(64),
          writtenAt: '2026-01-01T00:00:00.000Z',
        },
      ],
    });
    expect(previousOfKind([remote], full)).toBeUndefined();
  });
});

describe('backupSpaceNeeded', () => {
  it('is the previous backup of its kind, never more than the database estimate', () => {
    expect(backupSpaceNeeded(50_000_000, 'zstd', { size: 3_000_000 })).toBe(3_000_000);
    // The database shrank since (a big table emptied): the estimate bounds it.
    expect(backupSpaceNeeded(1_000_000, 'zstd', { size: 3_000_000 })).toBe(1_000_000);
  });

  it('without a previous backup, a low share of the estimate', () => {
    expect(backupSpaceNeeded(80_000_000, 'zstd', undefined)).toBe(10_000_000);
    expect(backupSpaceNeeded(80_000_000, 'gzip', undefined)).toBe(10_000_000);
    expect(backupSpaceNeeded(80_000_000, 'none', undefined)).toBe(40_000_000);
  });
});

describe('scratchSpaceNeeded', () => {
  it('is the artifact, twice it when a compressed one is decompressed', () => {
    expect(scratchSpaceNeeded(backup('2026-01-01T00:00:00.000Z', { size: 500 }), true)).toBe(1_000);
    expect(scratchSpaceNeeded(backup('2026-01-01T00:00:00.000Z', { size: 500 }), false)).toBe(500);
    const plain = backup('2026-01-01T00:00:00.000Z', { size: 500, compression: 'none' });
    expect(scratchSpaceNeeded(plain, true)).toBe(500);
  });
});

describe('directory-format dumps', () => {
  it('need the uncompressed dump in scratch: as the previous recorded it, else half the estimate', () => {
    const directory = { jobs: 2, files: 9, bytes: 30_000_000 };
    expect(directoryScratchNeeded(50_000_000, { directory })).toBe(30_000_000);
    expect(directoryScratchNeeded(10_000_000, { directory })).toBe(10_000_000);
    expect(directoryScratchNeeded(50_000_000, undefined)).toBe(25_000_000);
  });

  it('restore into exactly the bytes their manifest records, whatever the artifact weighs', () => {
    const manifest = backup('2026-01-01T00:00:00.000Z', {
      size: 500,
      format: 'directory',
      directory: { jobs: 2, files: 3, bytes: 7_000 },
    });
    expect(scratchSpaceNeeded(manifest, true)).toBe(7_000);
  });
});

describe('assertRoom', () => {
  it('passes with enough room and refuses with less, as STORAGE_FULL naming where', () => {
    expect(() => assertRoom('this backup', 'local (/srv/b)', 100, 100)).not.toThrow();
    expect(() => assertRoom('this backup', 'local (/srv/b)', 100, 99)).toThrow(
      expect.objectContaining({
        code: 'STORAGE_FULL',
        retryable: false,
        message: expect.stringContaining('local (/srv/b)'),
      }),
    );
  });
});
