import type { QualifiedTable } from '@pgkeep/core';

/** One table of a table restore, with the rows the backup counted in it (null: not counted). */
export interface RestoredTable extends QualifiedTable {
  rows: number | null;
}

export interface TableRestoreScript {
  /** psql variables (`-v name=value`): the only place where table names travel. */
  variables: Record<string, string>;
  /** SQL fed to psql before the dump: records the tables, then drops them. */
  prelude: string;
  /** SQL run after the dump, in the same transaction: a wrong row count undoes it all. */
  check: string;
}

const SETTING = 'pgkeep.restore_tables';
const TABLES = `pg_catalog.json_to_recordset(pg_catalog.current_setting('${SETTING}')::json)
    AS x(schema text, name text, rows text)`;

/*
 * Both blocks are constant text: they read the tables from a transaction-local setting and
 * build each statement on the server with format('%I'), so no table name is ever part of
 * the SQL pgkeep writes.
 */
const DROP_TABLES = `DO $$
DECLARE t record;
BEGIN
  FOR t IN SELECT * FROM ${TABLES} LOOP
    EXECUTE pg_catalog.format('DROP TABLE IF EXISTS %I.%I', t.schema, t.name);
  END LOOP;
END
$$;
`;

const CHECK_ROW_COUNTS = `DO $$
DECLARE t record; found bigint;
BEGIN
  FOR t IN SELECT * FROM ${TABLES} WHERE x.rows <> '' LOOP
    EXECUTE pg_catalog.format('SELECT count(*) FROM %I.%I', t.schema, t.name) INTO found;
    IF found <> t.rows::bigint THEN
      RAISE EXCEPTION 'row count of % is %, the backup has %',
        pg_catalog.format('%I.%I', t.schema, t.name), found, t.rows;
    END IF;
  END LOOP;
END
$$`;

/**
 * The statements around the dump of a table restore. The names reach the server as psql
 * variables: psql quotes each `:'var'` as a literal itself, the way a driver binds a parameter,
 * so a name with quotes, semicolons or `$$` in it is only ever data.
 */
export function tableRestoreScript(tables: readonly RestoredTable[]): TableRestoreScript {
  const variables: Record<string, string> = {};
  const rows: string[] = [];
  tables.forEach((table, index) => {
    variables[`pgkeep_schema_${index}`] = table.schema;
    variables[`pgkeep_table_${index}`] = table.name;
    variables[`pgkeep_rows_${index}`] = table.rows === null ? '' : String(table.rows);
    rows.push(`(:'pgkeep_schema_${index}', :'pgkeep_table_${index}', :'pgkeep_rows_${index}')`);
  });
  const list =
    rows.length > 0
      ? `(SELECT pg_catalog.json_agg(v)::text FROM (VALUES ${rows.join(', ')}) AS v(schema, name, rows))`
      : `'[]'`;
  return {
    variables,
    prelude: `SELECT pg_catalog.set_config('${SETTING}', ${list}, true);\n${DROP_TABLES}`,
    check: CHECK_ROW_COUNTS,
  };
}
