import type { BackupFormat, Compression } from '@pgkeep/core';
import { type EngineContext, runBackup } from '@pgkeep/engine';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEngine, testRun } from './support/engine.js';
import { createTestEnv, type TestEnv, withClient } from './support/test-env.js';

/**
 * A custom-format backup this process reads on its way to gzip (or to no compression) takes its
 * exact row counts from the COPY data pg_dump writes: each table is read once, by pg_dump, and
 * not a second time by a count(*) in the dump's snapshot. The server's own statistics say how
 * many scans each table had. zstd reads pg_dump's pipe itself, so a zstd backup (and plain
 * SQL) still counts by count(*): the control that shows the statistic sees a second scan.
 */
let env: TestEnv;
let engine: EngineContext;
const TABLES = ['alpha', 'beta', 'gamma'];

beforeAll(async () => {
  env = await createTestEnv('singlescan');
  await withClient(env.databaseUrl, (client) =>
    client.query(
      TABLES.map(
        (name, i) =>
          `CREATE TABLE ${name} (id int, body text);
           INSERT INTO ${name} SELECT g, repeat('x', 50) FROM generate_series(1, ${1000 * (i + 1)}) g;`,
      ).join('\n'),
    ),
  );
  engine = await createTestEngine(env.env);
});

afterAll(async () => {
  await env?.cleanup();
});

/** Sequential scans of each table, once no session of the backup is left to report more. */
async function seqScans(): Promise<Record<string, number>> {
  return withClient(env.databaseUrl, async (client) => {
    // pg_dump's and the snapshot session's statistics reach the server as their backends end.
    for (let i = 0; ; i++) {
      const { rows } = await client.query<{ n: string }>(
        `SELECT count(*)::text AS n FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()`,
      );
      if (rows[0]?.n === '0') break;
      if (i > 200) throw new Error('backup sessions did not end');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await client.query('SELECT pg_stat_force_next_flush()');
    await client.query('SELECT pg_stat_clear_snapshot()');
    const { rows } = await client.query<{ relname: string; seq_scan: string }>(
      `SELECT relname, seq_scan::text FROM pg_stat_user_tables WHERE relname = ANY($1)`,
      [TABLES],
    );
    return Object.fromEntries(rows.map((row) => [row.relname, Number(row.seq_scan)]));
  });
}

async function scansOfOneBackup(format: BackupFormat, compression: Compression) {
  const before = await seqScans();
  const manifest = await runBackup(
    engine,
    {
      tables: null,
      format,
      jobs: null,
      compression,
      label: null,
      type: 'manual',
      excludeTables: null,
      targetName: 'default',
      requestedBy: 'admin@example.com',
      requestedAt: new Date().toISOString(),
    },
    testRun(engine),
  );
  const after = await seqScans();
  return {
    rowCounts: manifest.rowCounts,
    scans: Object.fromEntries(
      TABLES.map((name) => [name, (after[name] ?? 0) - (before[name] ?? 0)]),
    ),
  };
}

const expectedCounts = { 'public.alpha': 1000, 'public.beta': 2000, 'public.gamma': 3000 };

describe('the rows of a backup', () => {
  it.each([
    ['custom', 'gzip'],
    ['custom', 'none'],
  ] as const)(
    'of a %s/%s backup are counted from its COPY data: one scan per table',
    async (format, compression) => {
      const { rowCounts, scans } = await scansOfOneBackup(format, compression);
      expect(rowCounts).toEqual(expectedCounts);
      expect(scans).toEqual({ alpha: 1, beta: 1, gamma: 1 });
    },
  );

  it.each([
    ['custom', 'zstd'],
    ['plain', 'gzip'],
  ] as const)(
    'of a %s/%s backup are counted by count(*) in its snapshot: two scans per table',
    async (format, compression) => {
      const { rowCounts, scans } = await scansOfOneBackup(format, compression);
      expect(rowCounts).toEqual(expectedCounts);
      expect(scans).toEqual({ alpha: 2, beta: 2, gamma: 2 });
    },
  );
});

describe('the count(*) beside pg_dump', () => {
  it('reads each table once, in one process, where the database plans parallel scans', async () => {
    const settings = [
      'max_parallel_workers_per_gather = 2',
      'parallel_setup_cost = 0',
      'parallel_tuple_cost = 0',
      'min_parallel_table_scan_size = 0',
    ];
    const database = await withClient(env.databaseUrl, async (client) => {
      const { rows } = await client.query<{ name: string }>(
        'SELECT quote_ident(current_database()) AS name',
      );
      return rows[0]?.name as string;
    });
    await withClient(env.databaseUrl, (client) =>
      client.query(
        settings.map((setting) => `ALTER DATABASE ${database} SET ${setting}`).join(';'),
      ),
    );
    try {
      // A session of the database's own settings counts with workers: each reads the table.
      await withClient(env.databaseUrl, async (client) => {
        const { rows } = await client.query<{ 'QUERY PLAN': string }>(
          'EXPLAIN SELECT count(*) FROM gamma',
        );
        expect(rows.map((row) => row['QUERY PLAN']).join('\n')).toContain('Gather');
      });
      const { rowCounts, scans } = await scansOfOneBackup('custom', 'zstd');
      expect(rowCounts).toEqual(expectedCounts);
      expect(scans).toEqual({ alpha: 2, beta: 2, gamma: 2 });
    } finally {
      await withClient(env.databaseUrl, (client) =>
        client.query(`ALTER DATABASE ${database} RESET ALL`),
      );
    }
  });
});
