import {
  COUNTING_SESSION_SETTINGS,
  clientConfig,
  countTableRows,
  parseDatabaseUrl,
} from '@pgkeep/pg';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, dropDatabase, urlWithDatabase, withClient } from './support/test-env.js';

/**
 * The sessions that count rows beside pg_dump or pg_restore (a backup's snapshot session, a
 * restore's and a verification's checks) count each table in one process and without JIT, even
 * on a database whose own settings make every count(*) a parallel, JIT-compiled plan.
 */
const serverUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const database = `pgkeep_counting_${process.pid}`;
const url = urlWithDatabase(serverUrl, database);
const ROWS = 20_000;

interface PlanNode {
  'Node Type': string;
  Plans?: PlanNode[];
}

function nodeTypes(node: PlanNode): string[] {
  return [node['Node Type'], ...(node.Plans ?? []).flatMap(nodeTypes)];
}

async function countPlan(settings?: Record<string, string>) {
  const client = new pg.Client(clientConfig(parseDatabaseUrl(url), 'pgkeep-test', settings));
  await client.connect();
  try {
    const { rows } = await client.query<{ 'QUERY PLAN': [{ Plan: PlanNode; JIT?: unknown }] }>(
      'EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM messages',
    );
    const explained = rows[0]?.['QUERY PLAN'][0];
    const jitAvailable = (await client.query('SELECT pg_jit_available() AS ok')).rows[0].ok;
    const count = await countTableRows(client, { schema: 'public', name: 'messages' });
    return {
      nodes: explained ? nodeTypes(explained.Plan) : [],
      jit: explained?.JIT,
      jitAvailable: jitAvailable as boolean,
      count,
    };
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  await createDatabase(serverUrl, database);
  await withClient(url, (client) =>
    client.query(`
      CREATE TABLE messages (id int PRIMARY KEY, body text);
      INSERT INTO messages SELECT g, repeat('x', 50) FROM generate_series(1, ${ROWS}) g;
      ALTER DATABASE ${database} SET max_parallel_workers_per_gather = 2;
      ALTER DATABASE ${database} SET parallel_setup_cost = 0;
      ALTER DATABASE ${database} SET parallel_tuple_cost = 0;
      ALTER DATABASE ${database} SET min_parallel_table_scan_size = 0;
      ALTER DATABASE ${database} SET jit = on;
      ALTER DATABASE ${database} SET jit_above_cost = 0;
    `),
  );
});

afterAll(async () => {
  await dropDatabase(serverUrl, database);
});

describe('counting sessions', () => {
  it('a plain session on this database counts with parallel workers (what the settings undo)', async () => {
    const plain = await countPlan();
    expect(plain.nodes).toContain('Gather');
    // A server built without LLVM has no JIT to turn off.
    if (plain.jitAvailable) expect(plain.jit).toBeDefined();
    expect(plain.count).toBe(ROWS);
  });

  it('a counting session counts in one process, without JIT, and exactly', async () => {
    const counting = await countPlan(COUNTING_SESSION_SETTINGS);
    expect(counting.nodes).not.toContain('Gather');
    expect(counting.nodes).not.toContain('Gather Merge');
    expect(counting.jit).toBeUndefined();
    expect(counting.count).toBe(ROWS);
  });
});
