import { describe, expect, it } from 'vitest';
import {
  artifactExtension,
  artifactFilename,
  artifactIdOf,
  type BackupManifest,
  manifestFilename,
  manifestSchema,
} from './manifest.js';

const id = '2026-01-22T16-30-00-000Z-a1b2c3a1b2c3';

function manifest(overrides: Partial<BackupManifest> = {}): BackupManifest {
  return {
    manifestVersion: 1,
    id,
    filename: `backup-${id}.dump.zst`,
    size: 1234,
    sha256: 'ab'.repeat(32),
    createdAt: '2026-01-22T16:30:00.000Z',
    completedAt: '2026-01-22T16:30:05.000Z',
    durationMs: 5000,
    type: 'manual',
    status: 'completed',
    format: 'custom',
    compression: 'zstd',
    tables: null,
    database: 'app',
    serverVersion: '15.20',
    pgDumpVersion: '15.20',
    rowCounts: { 'public.User': 3 },
    requestedBy: 'admin-1',
    label: null,
    jobId: 'backup-00000000-0000-4000-8000-000000000000',
    encryption: null,
    copies: [
      {
        destination: 'local',
        location: `backup-${id}.dump.zst`,
        size: 1234,
        sha256: 'ab'.repeat(32),
        writtenAt: '2026-01-22T16:30:05.000Z',
      },
    ],
    failedCopies: [],
    ...overrides,
  };
}

describe('artifactFilename', () => {
  it.each([
    ['custom', 'zstd', 'dump.zst'],
    ['custom', 'gzip', 'dump.gz'],
    ['custom', 'none', 'dump'],
    ['plain', 'zstd', 'sql.zst'],
    ['plain', 'gzip', 'sql.gz'],
    ['plain', 'none', 'sql'],
    ['directory', 'zstd', 'dir.tar.zst'],
    ['directory', 'gzip', 'dir.tar.gz'],
    ['directory', 'none', 'dir.tar'],
  ] as const)('%s + %s → .%s', (format, compression, extension) => {
    expect(artifactExtension(format, compression)).toBe(extension);
    expect(artifactFilename(id, format, compression)).toBe(`backup-${id}.${extension}`);
  });

  it('knows the id of every artifact it names, a directory-format tar included', () => {
    for (const format of ['custom', 'plain', 'directory'] as const) {
      expect(artifactIdOf(artifactFilename(id, format, 'zstd', true))).toBe(id);
      expect(artifactIdOf(artifactFilename(id, format, 'none'))).toBe(id);
    }
    expect(artifactIdOf(`backup-${id}.tar.zst`)).toBeUndefined();
    expect(artifactIdOf(`backup-${id}.dir.zst`)).toBeUndefined();
  });

  it('names the manifest after the id', () => {
    expect(manifestFilename(id)).toBe(`backup-${id}.manifest.json`);
  });
});

describe('manifestSchema', () => {
  it('accepts a well-formed manifest, full or table-only, labelled or not', () => {
    expect(manifestSchema.parse(manifest())).toEqual(manifest());
    const tableOnly = manifest({
      tables: ['public.User'],
      label: 'before migration',
      format: 'plain',
      compression: 'none',
      filename: `backup-${id}.sql`,
      type: 'pitr',
      jobId: null,
    });
    expect(manifestSchema.safeParse(tableOnly).success).toBe(true);
  });

  describe('a directory-format backup', () => {
    const directory = manifest({
      format: 'directory',
      filename: `backup-${id}.dir.tar.zst`,
      directory: { jobs: 4, files: 12, bytes: 987_654 },
    });

    it('is accepted with its dump described', () => {
      expect(manifestSchema.parse(directory)).toEqual(directory);
    });

    it.each([
      ['without its dump', { directory: undefined }],
      ['with jobs 0', { directory: { jobs: 0, files: 12, bytes: 1 } }],
      ['with jobs 33', { directory: { jobs: 33, files: 12, bytes: 1 } }],
      ['with no file', { directory: { jobs: 2, files: 0, bytes: 1 } }],
      ['with negative bytes', { directory: { jobs: 2, files: 3, bytes: -1 } }],
      ['with an unknown key', { directory: { jobs: 2, files: 3, bytes: 1, path: '/etc' } }],
      ['named as a custom archive', { filename: `backup-${id}.dump.zst` }],
      ['named as a tar without its kind', { filename: `backup-${id}.tar.zst` }],
    ])('is rejected %s', (_label, overrides) => {
      const result = manifestSchema.safeParse({ ...directory, ...overrides });
      expect(result.success).toBe(false);
    });

    it('is what a custom or plain backup may never claim to be', () => {
      const claimed = manifest({ directory: { jobs: 2, files: 3, bytes: 10 } });
      expect(manifestSchema.safeParse(claimed).success).toBe(false);
    });
  });

  it('accepts a legacy id without suffix', () => {
    const legacy = '2026-01-22T16-30-00-000Z';
    const result = manifestSchema.safeParse(
      manifest({ id: legacy, filename: `backup-${legacy}.dump.zst` }),
    );
    expect(result.success).toBe(true);
  });

  it.each([
    ['a path traversal', '../../etc/passwd'],
    ['an absolute path', `/etc/backup-${id}.dump.zst`],
    ['a traversal ending like the artifact', `../backup-${id}.dump.zst`],
    ['another id', 'backup-2026-01-22T16-30-00-000Z-ffffffffffff.dump.zst'],
    ['another format', `backup-${id}.sql.zst`],
    ['another compression', `backup-${id}.dump.gz`],
    ['the manifest itself', `backup-${id}.manifest.json`],
    ['an empty name', ''],
  ])('rejects a filename that is %s', (_label, filename) => {
    const result = manifestSchema.safeParse(manifest({ filename }));
    expect(result.success).toBe(false);
    expect(result.error?.issues.some((issue) => issue.path.join('.') === 'filename')).toBe(true);
  });

  it.each([
    ['a short sha256', { sha256: 'ab'.repeat(31) }],
    ['an upper-case sha256', { sha256: 'AB'.repeat(32) }],
    ['a non-hex sha256', { sha256: 'zz'.repeat(32) }],
    ['an unknown status', { status: 'running' }],
    ['an unknown type', { type: 'nightly' }],
    ['an unknown format', { format: 'tar' }],
    ['an unknown compression', { compression: 'lz4' }],
    ['a negative size', { size: -1 }],
    ['a fractional size', { size: 1.5 }],
    ['an id that is a path', { id: '../x' }],
    ['a bad createdAt', { createdAt: 'yesterday' }],
    ['a negative row count', { rowCounts: { 'public.User': -1 } }],
    ['another manifest version', { manifestVersion: 3 }],
    ['a version 2 without copies', { manifestVersion: 2, copies: [] }],
  ])('rejects %s', (_label, overrides) => {
    const value = { ...manifest(), ...overrides };
    expect(manifestSchema.safeParse(value).success).toBe(false);
  });

  it.each([
    ['a table name with a quote and a semicolon', { tables: ['public.x"; DROP TABLE y; --'] }],
    ['a table name with a space', { tables: ['public.User Data'] }],
    ['a table without its schema', { tables: ['User'] }],
    ['a table with two dots', { tables: ['a.b.c'] }],
    ['an empty table list', { tables: [] }],
    ['a table listed twice', { tables: ['public.User', 'public.User'] }],
    ['more than 1000 tables', { tables: Array.from({ length: 1001 }, (_, i) => `public.t${i}`) }],
    ['a row count of a table the backup does not hold', { tables: ['public.Payment'] }],
    ['a database name that is not plain', { database: 'app"; DROP DATABASE x; --' }],
    ['a database name with a dot', { database: 'my.app' }],
    ['a row count key with a NUL', { rowCounts: { 'public.a\u0000b': 1 } }],
    ['a row count key without a schema', { rowCounts: { User: 1 } }],
    [
      'a row count key longer than two identifiers',
      { rowCounts: { [`public.${'x'.repeat(130)}`]: 1 } },
    ],
    ['a label with a newline', { label: 'line\nbreak' }],
    ['an empty label', { label: '' }],
    ['a label of 201 characters', { label: 'x'.repeat(201) }],
    ['an empty requester', { requestedBy: '' }],
    ['a requester of 201 characters', { requestedBy: 'x'.repeat(201) }],
    ['a version with spaces', { pgDumpVersion: '15.20 (Debian)' }],
    ['an empty server version', { serverVersion: '' }],
    ['an empty job id', { jobId: '' }],
  ])('rejects %s', (_label, overrides) => {
    const value = { ...manifest(), ...overrides };
    expect(manifestSchema.safeParse(value).success).toBe(false);
  });

  it('accepts row counts of any table a full backup held, quotes and semicolons included', () => {
    const counts = { 'public.Ord"er;s DROP': 40, 'App Schema.f$pgkeep$t': 2 };
    expect(manifestSchema.safeParse(manifest({ rowCounts: counts })).success).toBe(true);
  });

  it('accepts a table backup whose partitioned table itself has no row count', () => {
    const partitioned = manifest({
      tables: ['public.events', 'public.events_2024', 'public.events_2025'],
      rowCounts: { 'public.events_2024': 10, 'public.events_2025': 0 },
    });
    expect(manifestSchema.safeParse(partitioned).success).toBe(true);
  });

  it('rejects a manifest missing a field', () => {
    const { sha256: _omitted, ...rest } = manifest();
    expect(manifestSchema.safeParse(rest).success).toBe(false);
  });
});
