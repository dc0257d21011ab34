import {
  AppError,
  MAX_BACKUP_TABLES,
  parseTableName,
  type QualifiedTable,
  qualifiedTableNameSchema,
  tableKey,
} from '@pgkeep/core';
import type { ClientBase, Pool } from 'pg';
import type { SessionSettings } from './connection.js';

/** Ordinary tables whose rows pg_dump writes (system schemas and extension members left out). */
const userTablesSql = `
  SELECT n.nspname AS schema, c.relname AS name
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind = 'r'
    AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg\\_toast%'
    AND n.nspname NOT LIKE 'pg\\_temp%'
    AND NOT EXISTS (
      SELECT 1 FROM pg_depend d
      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
  ORDER BY 1, 2`;

export async function listUserTables(client: ClientBase): Promise<QualifiedTable[]> {
  const { rows } = await client.query<QualifiedTable>(userTablesSql);
  return rows;
}

/** A table a table backup holds. */
export interface ResolvedTable extends QualifiedTable {
  /** A partitioned table holds no rows itself: its partitions do, and are listed after it. */
  partitioned: boolean;
}

/**
 * Finds each named table exactly as written, case included. A name without a schema must be
 * unique across user schemas. An unknown or ambiguous name is a TABLE_NOT_FOUND error naming
 * it: a table backup never silently leaves a table out. A partitioned table brings all its
 * partitions with it (pg_dump --table dumps the parent alone, whose rows live in them).
 */
export async function resolveTables(
  client: ClientBase,
  names: readonly string[],
): Promise<ResolvedTable[]> {
  const { rows } = await client.query<QualifiedTable & { kind: string; oid: string }>(
    `SELECT n.nspname AS schema, c.relname AS name, c.relkind::text AS kind, c.oid::text AS oid
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p')
       AND n.nspname NOT IN ('pg_catalog', 'information_schema')
       AND c.relname = ANY($1::text[])`,
    [names.map((name) => parseTableName(name).name)],
  );
  const missing: string[] = [];
  const ambiguous: string[] = [];
  const resolved: (typeof rows)[number][] = [];
  for (const name of names) {
    const wanted = parseTableName(name);
    const qualified = name.includes('.');
    const matches = rows.filter(
      (row) => row.name === wanted.name && (!qualified || row.schema === wanted.schema),
    );
    const [first] = matches;
    if (!first) missing.push(name);
    else if (matches.length > 1) ambiguous.push(name);
    else resolved.push(first);
  }
  if (missing.length > 0) {
    throw new AppError('TABLE_NOT_FOUND', `table not found: ${missing.join(', ')}`, {
      details: { missing },
    });
  }
  if (ambiguous.length > 0) {
    throw new AppError(
      'TABLE_NOT_FOUND',
      `table name matches several schemas, qualify it as schema.table: ${ambiguous.join(', ')}`,
      { details: { ambiguous } },
    );
  }
  const partitionsOf = await listPartitions(
    client,
    resolved.filter((table) => table.kind === 'p').map((table) => table.oid),
  );
  // `User` and `public.User` are one table, and a partition named beside its parent is already
  // there: dump it, and count it, once.
  const tables: ResolvedTable[] = [];
  const seen = new Set<string>();
  const add = (table: ResolvedTable) => {
    const key = tableKey(table);
    if (seen.has(key)) return;
    seen.add(key);
    tables.push(table);
  };
  for (const table of resolved) {
    add({ schema: table.schema, name: table.name, partitioned: table.kind === 'p' });
    for (const partition of partitionsOf.get(table.oid) ?? []) add(partition);
  }
  if (tables.length > MAX_BACKUP_TABLES) {
    throw new AppError(
      'VALIDATION_ERROR',
      `these tables and their partitions are ${tables.length} tables; a table backup holds at most ${MAX_BACKUP_TABLES}: back up the whole database instead`,
    );
  }
  return tables;
}

/**
 * Every partition under each partitioned table (sub-partitions too), level by level. A
 * partition becomes part of the manifest, so its name must follow the same rules as a table
 * the API is asked for; a foreign-table partition holds no rows pg_dump could dump.
 */
async function listPartitions(
  client: ClientBase,
  roots: readonly string[],
): Promise<Map<string, ResolvedTable[]>> {
  const partitions = new Map<string, ResolvedTable[]>();
  if (roots.length === 0) return partitions;
  const { rows } = await client.query<QualifiedTable & { root: string; kind: string }>(
    `SELECT root.oid::text AS root, n.nspname AS schema, c.relname AS name, c.relkind::text AS kind
     FROM unnest($1::oid[]) AS root(oid)
     CROSS JOIN LATERAL pg_partition_tree(root.oid::regclass) AS tree
     JOIN pg_class c ON c.oid = tree.relid
     JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE tree.level > 0
     ORDER BY tree.level, n.nspname, c.relname`,
    [roots],
  );
  for (const row of rows) {
    const table = { schema: row.schema, name: row.name };
    if (row.kind === 'f') {
      throw new AppError(
        'VALIDATION_ERROR',
        `partition ${tableKey(table)} is a foreign table, whose rows pg_dump does not dump: back up the whole database, or its server, instead`,
      );
    }
    if (!qualifiedTableNameSchema.safeParse(tableKey(table)).success) {
      throw new AppError(
        'INVALID_TABLE_NAME',
        `partition ${JSON.stringify(tableKey(table))} has a name a table backup cannot hold (letters, digits, _ and $ only): rename it, or back up the whole database`,
        { details: { partition: tableKey(table) } },
      );
    }
    const list = partitions.get(row.root) ?? [];
    list.push({ ...table, partitioned: row.kind === 'p' });
    partitions.set(row.root, list);
  }
  return partitions;
}

/*
 * A count(*) whose table is named by parameters: the server builds the statement with
 * format('%I') and runs it through query_to_xml, so no name is pasted into SQL text here.
 */
const countRowsSql = `SELECT (pg_catalog.xpath('/row/n/text()', pg_catalog.query_to_xml(
  pg_catalog.format('SELECT count(*) AS n FROM %I.%I', $1::text, $2::text), false, true, '')))[1]::text AS n`;

/**
 * Settings for a session that counts rows while pg_dump or pg_restore works (a backup's snapshot
 * session, a restore's or a verification's checks). The count only has to be done before the
 * dump or the load is, so it runs as one process: a parallel count(*) (the server's default
 * allows 2 workers for a large table) used twice the CPU of a serial one for the same table and
 * was slower too on 2 cores, taking them from pg_dump, zstd or the index builds. JIT compiling a
 * count(*) costs more than it saves.
 */
export const COUNTING_SESSION_SETTINGS: SessionSettings = {
  max_parallel_workers_per_gather: '0',
  jit: 'off',
};

/** Exact rows of one table (its partitions or inheritance children included). */
export async function countTableRows(client: ClientBase, table: QualifiedTable): Promise<number> {
  const { rows } = await client.query<{ n: string }>(countRowsSql, [table.schema, table.name]);
  return Number(rows[0]?.n ?? 0);
}

/** Exact row counts; run inside the dump's snapshot so they describe the same data. */
export async function countRows(
  client: ClientBase,
  tables: readonly QualifiedTable[],
): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const table of tables) counts[tableKey(table)] = await countTableRows(client, table);
  return counts;
}

/** Bytes on disk of what a dump will read: the estimate behind a backup's percentage. */
export async function estimateDumpBytes(
  client: ClientBase,
  tables: readonly QualifiedTable[] | null,
): Promise<number> {
  if (tables === null) {
    const { rows } = await client.query<{ size: string }>(
      'SELECT pg_database_size(current_database())::text AS size',
    );
    return Number(rows[0]?.size ?? 0);
  }
  const { rows } = await client.query<{ size: string }>(
    `SELECT coalesce(sum(pg_table_size(c.oid)), 0)::text AS size
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     JOIN unnest($1::text[], $2::text[]) AS t(schema, name)
       ON n.nspname = t.schema AND c.relname = t.name`,
    [tables.map((table) => table.schema), tables.map((table) => table.name)],
  );
  return Number(rows[0]?.size ?? 0);
}

export async function serverVersion(
  client: ClientBase | Pool,
): Promise<{ version: string; num: number }> {
  const { rows } = await client.query<{ version: string; num: string }>(
    "SELECT current_setting('server_version') AS version, current_setting('server_version_num') AS num",
  );
  const row = rows[0];
  return { version: (row?.version ?? '').split(' ')[0] ?? '', num: Number(row?.num ?? 0) };
}
