import type { BackupManifest } from '@pgkeep/core';
import { describe, expect, it } from 'vitest';
import type { EngineContext } from './engine-context.js';
import { assertPgRestoreCanRead } from './restore-steps.js';
import { previousDatabaseName } from './run-restore.js';

const engineWith = (major: number) =>
  ({ pgRestore: { version: `${major}.2`, major } }) as unknown as EngineContext;
const manifestBy = (pgDumpVersion: string) =>
  ({ id: '2026-01-22T16-30-00-000Z-a1b2c3d4e5f6', pgDumpVersion }) as BackupManifest;

describe('a restore refuses an archive newer than its pg_restore', () => {
  it('accepts archives of the same or an older major version', () => {
    expect(() => assertPgRestoreCanRead(engineWith(15), manifestBy('15.20'))).not.toThrow();
    expect(() => assertPgRestoreCanRead(engineWith(16), manifestBy('15.20'))).not.toThrow();
  });

  it('refuses an archive made by a newer pg_dump with PG_RESTORE_TOO_OLD', () => {
    expect(() => assertPgRestoreCanRead(engineWith(15), manifestBy('16.4'))).toThrow(
      expect.objectContaining({ code: 'PG_RESTORE_TOO_OLD' }),
    );
  });
});

describe('the name a replaced database is kept under', () => {
  it('stays within 63 bytes and keeps the database name when it fits', () => {
    const when = new Date('2026-11-26T12:39:22.000Z');
    expect(previousDatabaseName('panel', when)).toMatch(
      /^panel_pre_restore_20261126123922_[0-9a-f]{4}$/,
    );
    const long = previousDatabaseName('a'.repeat(63), when);
    expect(long.length).toBeLessThanOrEqual(63);
    expect(long).toMatch(/^a+_pre_restore_20261126123922_[0-9a-f]{4}$/);
  });
});
