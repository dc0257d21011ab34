import { describe, expect, it } from 'vitest';
import {
  MAX_TABLES,
  parseTableName,
  pgDumpTablePattern,
  tableKey,
  tableListSchema,
  tableNameSchema,
} from './tables.js';

describe('tableListSchema', () => {
  it('accepts plain, mixed-case and schema-qualified names', () => {
    const names = ['User', 'WhatsappMessage', 'public.User'];
    expect(tableListSchema.parse(names)).toEqual(names);
    expect(tableListSchema.safeParse(['_private', 'audit.log_2026', 'a$b']).success).toBe(true);
  });

  it.each([
    ['a double quote', 'User"'],
    ['a quoted name', '"User"'],
    ['a single quote', "User'"],
    ['a semicolon', 'User;DROP TABLE x'],
    ['an SQL comment', 'User--'],
    ['a newline', 'User\nOther'],
    ['a trailing newline', 'User\n'],
    ['a space', 'User Table'],
    ['the empty string', ''],
    ['two dots', 'a.b.c'],
    ['a leading dot', '.User'],
    ['a trailing dot', 'public.'],
    ['a leading digit', '1User'],
    ['a glob', 'User*'],
    ['a pattern wildcard', 'Use?'],
    ['a backslash', 'User\\'],
    ['a 64-character identifier', 'a'.repeat(64)],
  ])('rejects a name with %s', (_label, name) => {
    expect(tableNameSchema.safeParse(name).success).toBe(false);
    expect(tableListSchema.safeParse(['User', name]).success).toBe(false);
  });

  it('accepts a 63-character identifier, the PostgreSQL limit', () => {
    expect(tableNameSchema.safeParse('a'.repeat(63)).success).toBe(true);
    expect(tableNameSchema.safeParse(`${'s'.repeat(63)}.${'t'.repeat(63)}`).success).toBe(true);
  });

  it('rejects duplicates and an empty list', () => {
    expect(tableListSchema.safeParse(['User', 'User']).success).toBe(false);
    expect(tableListSchema.safeParse([]).success).toBe(false);
  });

  it(`accepts ${MAX_TABLES} tables and rejects more`, () => {
    const names = (count: number) => Array.from({ length: count }, (_, i) => `t${i}`);
    expect(MAX_TABLES).toBe(100);
    expect(tableListSchema.safeParse(names(100)).success).toBe(true);
    expect(tableListSchema.safeParse(names(101)).success).toBe(false);
    expect(tableListSchema.safeParse(names(10_000)).success).toBe(false);
  });

  it('rejects values that are not a list of strings', () => {
    expect(tableListSchema.safeParse('User').success).toBe(false);
    expect(tableListSchema.safeParse([1]).success).toBe(false);
    expect(tableListSchema.safeParse(null).success).toBe(false);
  });
});

describe('parseTableName and tableKey', () => {
  it('puts an unqualified name in the default schema', () => {
    expect(parseTableName('User')).toEqual({ schema: 'public', name: 'User' });
    expect(parseTableName('User', 'app')).toEqual({ schema: 'app', name: 'User' });
  });

  it('splits a qualified name and keeps case', () => {
    expect(parseTableName('Audit.WhatsappMessage')).toEqual({
      schema: 'Audit',
      name: 'WhatsappMessage',
    });
  });

  it('gives the same key for "User" and "public.User"', () => {
    expect(tableKey(parseTableName('User'))).toBe('public.User');
    expect(tableKey(parseTableName('public.User'))).toBe('public.User');
    expect(tableKey({ schema: 'app', name: 'Msg' })).toBe('app.Msg');
  });
});

describe('pgDumpTablePattern', () => {
  it('quotes schema and name exactly, case included', () => {
    expect(pgDumpTablePattern({ schema: 'public', name: 'User' })).toBe('"public"."User"');
    expect(pgDumpTablePattern(parseTableName('WhatsappMessage'))).toBe(
      '"public"."WhatsappMessage"',
    );
  });

  it('doubles embedded double quotes', () => {
    expect(pgDumpTablePattern({ schema: 'we"ird', name: 'a"b' })).toBe('"we""ird"."a""b"');
  });
});
