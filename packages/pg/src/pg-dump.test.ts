import { parseTableName } from '@pgkeep/core';
import { describe, expect, it } from 'vitest';
import { parseDatabaseUrl } from './connection.js';
import { type PgDumpOptions, pgDumpArgs } from './pg-dump.js';

const password = 'S3cr3t-P@ss';
const databaseUrl = `postgres://pgkeep:${encodeURIComponent(password)}@db.example:5433/app`;
const target = parseDatabaseUrl(databaseUrl);

describe('pgDumpArgs', () => {
  it('dumps the custom format without pg_dump compression', () => {
    const args = pgDumpArgs({ format: 'custom', tables: null });
    expect(args).toContain('--format=custom');
    expect(args).toContain('--compress=0');
    expect(args).toContain('--no-password');
    expect(args).not.toContain('--format=plain');
    expect(args.some((arg) => arg.startsWith('--table'))).toBe(false);
    expect(args).not.toContain('--strict-names');
  });

  it('dumps plain SQL without the custom-format flags', () => {
    const args = pgDumpArgs({ format: 'plain', tables: null });
    expect(args).toContain('--format=plain');
    expect(args).not.toContain('--format=custom');
    expect(args).not.toContain('--compress=0');
  });

  it('dumps the directory format in parallel into the directory it is given', () => {
    const args = pgDumpArgs({
      format: 'directory',
      tables: null,
      directory: '/backups/backup-x.dump-1234.partial',
      jobs: 6,
      snapshot: '00000003-0000001B-1',
    });
    expect(args).toEqual(
      expect.arrayContaining([
        '--format=directory',
        '--compress=0',
        '--jobs=6',
        '--file=/backups/backup-x.dump-1234.partial',
        '--snapshot=00000003-0000001B-1',
      ]),
    );
    expect(() => pgDumpArgs({ format: 'directory', tables: null, jobs: 2 })).toThrow(/directory/);
  });

  it('asks for strict names and one exact --table per table', () => {
    const tables = ['User', 'WhatsappMessage', 'audit.Log'].map((name) => parseTableName(name));
    const args = pgDumpArgs({ format: 'custom', tables });
    expect(args).toContain('--strict-names');
    expect(args.filter((arg) => arg.startsWith('--table'))).toEqual([
      '--table="public"."User"',
      '--table="public"."WhatsappMessage"',
      '--table="audit"."Log"',
    ]);
  });

  it('dumps in an exported snapshot when given one', () => {
    const args = pgDumpArgs({ format: 'plain', tables: null, snapshot: '00000003-0000001B-1' });
    expect(args).toContain('--snapshot=00000003-0000001B-1');
    expect(pgDumpArgs({ format: 'plain', tables: null }).some((a) => a.includes('snapshot'))).toBe(
      false,
    );
  });

  it('never puts the password or the connection URL on the command line', () => {
    const options: PgDumpOptions = {
      target,
      format: 'custom',
      tables: [parseTableName('User')],
      snapshot: '00000003-0000001B-1',
    };
    const args = pgDumpArgs(options);
    const joined = args.join(' ');
    expect(joined).not.toContain(password);
    expect(joined).not.toContain(encodeURIComponent(password));
    expect(joined).not.toContain('postgres://');
    expect(joined).not.toContain('db.example');
    expect(args.some((arg) => /^(-d|--dbname|-h|--host|-U|--username|-W)/.test(arg))).toBe(false);
  });
});
