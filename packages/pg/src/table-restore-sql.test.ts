import { describe, expect, it } from 'vitest';
import { tableRestoreScript } from './table-restore-sql.js';

describe('the statements of a table restore', () => {
  const tables = [
    { schema: 'public', name: 'f$pgkeep$t', rows: 120 },
    { schema: 'App', name: `x"; DROP TABLE victim; --'`, rows: null },
  ];

  it('carry the table names only as psql variables, never in the SQL text', () => {
    const script = tableRestoreScript(tables);
    expect(script.variables).toEqual({
      pgkeep_schema_0: 'public',
      pgkeep_table_0: 'f$pgkeep$t',
      pgkeep_rows_0: '120',
      pgkeep_schema_1: 'App',
      pgkeep_table_1: `x"; DROP TABLE victim; --'`,
      pgkeep_rows_1: '',
    });
    for (const sql of [script.prelude, script.check]) {
      expect(sql).not.toContain('pgkeep$t');
      expect(sql).not.toContain('victim');
      expect(sql).not.toContain('App');
    }
    expect(script.prelude).toContain(":'pgkeep_table_1'");
  });

  it('is the same text whatever the names are', () => {
    const renamed = tables.map((table, index) => ({ ...table, name: `t${index}` }));
    expect(tableRestoreScript(renamed).prelude).toBe(tableRestoreScript(tables).prelude);
    expect(tableRestoreScript(renamed).check).toBe(tableRestoreScript(tables).check);
  });
});
