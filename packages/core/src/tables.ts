import { z } from 'zod';

/**
 * A table as a user names it: `User` or `schema.User`, matched exactly, case included. Names
 * are plain identifiers; quotes, dots beyond one, spaces, semicolons or newlines are refused
 * before they get anywhere near pg_dump.
 */
const identifier = '[A-Za-z_][A-Za-z0-9_$]{0,62}';
export const tableNamePattern = new RegExp(`^(?:${identifier}\\.)?${identifier}$`);
export const MAX_TABLES = 100;
/** Tables one backup may hold: those named, and the partitions they bring with them. */
export const MAX_BACKUP_TABLES = 1000;

export const tableNameSchema = z
  .string()
  .max(127)
  .regex(tableNamePattern, 'must be a table name like "User" or "schema.User"');

export const tableListSchema = z
  .array(tableNameSchema)
  .min(1)
  .max(MAX_TABLES)
  .refine((names) => new Set(names).size === names.length, 'must not repeat a table');

/** A table as a manifest records it: always `schema.name`, each part a plain identifier. */
export const qualifiedTableNameSchema = z
  .string()
  .max(127)
  .regex(new RegExp(`^${identifier}\\.${identifier}$`), 'must be a table name like "schema.User"');

export interface QualifiedTable {
  schema: string;
  name: string;
}

export function parseTableName(value: string, defaultSchema = 'public'): QualifiedTable {
  const dot = value.indexOf('.');
  if (dot === -1) return { schema: defaultSchema, name: value };
  return { schema: value.slice(0, dot), name: value.slice(dot + 1) };
}

/** `public.User` as keys of row counts and in manifests. */
export function tableKey(table: QualifiedTable): string {
  return `${table.schema}.${table.name}`;
}

/** The pattern pg_dump's `--table` wants for an exact, case-sensitive match. */
export function pgDumpTablePattern(table: QualifiedTable): string {
  const quote = (part: string) => `"${part.replaceAll('"', '""')}"`;
  return `${quote(table.schema)}.${quote(table.name)}`;
}
