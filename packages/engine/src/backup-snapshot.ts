import {
  AppError,
  type JobPayload,
  parseTableName,
  type QualifiedTable,
  tableKey,
} from '@pgkeep/core';
import {
  listUserTables,
  pgDumpSupportsServer,
  type ResolvedTable,
  resolveTables,
  serverVersion,
} from '@pgkeep/pg';
import type pg from 'pg';
import type { EngineContext } from './engine-context.js';

/** A backup's snapshot, exported by its own session, and what it will dump. */
export interface BackupSnapshot {
  /** For pg_dump --snapshot: the dump sees exactly what the session sees. */
  snapshot: string | undefined;
  serverVersion: string;
  /** A table backup's tables (a partitioned one with its partitions); null: the database. */
  tables: ResolvedTable[] | null;
  /** Tables a full backup leaves out, those that exist. */
  excluded: QualifiedTable[];
  /**
   * The tables whose rows the manifest counts: where rows live, so a partitioned table's are
   * its partitions' (listed with it) and none is counted twice.
   */
  countedTables(): Promise<QualifiedTable[]>;
}

/**
 * Opens the backup's REPEATABLE READ transaction on `client` (connected, or connecting as
 * `connecting`), exports its snapshot, checks that pg_dump can read the server, and resolves
 * the tables the payload names, all in that snapshot.
 */
export async function openBackupSnapshot(
  engine: EngineContext,
  client: pg.Client,
  connecting: Promise<unknown>,
  payload: JobPayload<'backup'>,
): Promise<BackupSnapshot> {
  try {
    await connecting;
  } catch (error) {
    throw new AppError(
      'DATABASE_UNAVAILABLE',
      `cannot connect to database ${engine.target.database}`,
      { retryable: true, cause: error },
    );
  }
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  const { rows } = await client.query<{ snapshot: string }>(
    'SELECT pg_export_snapshot() AS snapshot',
  );
  const server = await serverVersion(client);
  if (!pgDumpSupportsServer(engine.pgDump.major, server.num)) {
    throw new AppError(
      'PG_DUMP_FAILED',
      `pg_dump ${engine.pgDump.version} is older than the server (${server.version}); install pg_dump ${Math.floor(server.num / 10_000)} or newer`,
    );
  }
  const tables = payload.tables ? await resolveTables(client, payload.tables) : null;
  const excluded =
    !tables && payload.excludeTables ? await existingTables(client, payload.excludeTables) : [];
  const excludedKeys = new Set(excluded.map(tableKey));
  return {
    snapshot: rows[0]?.snapshot,
    serverVersion: server.version,
    tables,
    excluded,
    countedTables: async () =>
      tables?.filter((table) => !table.partitioned) ??
      (await listUserTables(client)).filter((table) => !excludedKeys.has(tableKey(table))),
  };
}

/**
 * The tables of `names` that exist: a table the target's configuration leaves out may not exist
 * (yet, or any more) in every database a discovery target covers.
 */
async function existingTables(client: pg.Client, names: string[]): Promise<QualifiedTable[]> {
  const all = await listUserTables(client);
  const wanted = new Set(names.map((name) => tableKey(parseTableName(name))));
  return all.filter((table) => wanted.has(tableKey(table)));
}
