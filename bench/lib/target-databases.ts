import { dropDatabase, serverUrl, withClient } from './db.js';

/**
 * The small databases of the targets section: one server's worth of tenants, each with three
 * tables of generated rows, the same on every run. Database i (from 1) holds
 * `factor(i) = 1 + (i mod 4) / 2` times the base rows, so sizes differ as real ones do
 * (≈ 3 to 7 MB of table data each).
 */
const BASE_ROWS = { customers: 5_000, orders: 20_000, events: 10_000 } as const;

export interface TargetDatabase {
  name: string;
  /** Exact row counts by `schema.table`, as a backup's manifest records them. */
  rowCounts: Record<string, number>;
  sizeBytes: number;
}

export function targetDatabaseNames(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}${String(i + 1).padStart(2, '0')}`);
}

function rowsOf(index: number): Record<keyof typeof BASE_ROWS, number> {
  const factor = 1 + (index % 4) / 2;
  return {
    customers: Math.round(BASE_ROWS.customers * factor),
    orders: Math.round(BASE_ROWS.orders * factor),
    events: Math.round(BASE_ROWS.events * factor),
  };
}

/** Deterministic rows: every value comes from the row number. */
function generationSql(rows: Record<keyof typeof BASE_ROWS, number>): string {
  return `
CREATE TABLE customers (
  id integer PRIMARY KEY,
  name text NOT NULL,
  email text NOT NULL,
  created_at timestamptz NOT NULL
);
INSERT INTO customers
SELECT i, 'customer ' || i, 'c' || i || '@example.test',
       timestamptz '2026-01-01 00:00:00+00' + i * interval '1 minute'
FROM generate_series(1, ${rows.customers}) AS i;

CREATE TABLE orders (
  id integer PRIMARY KEY,
  customer_id integer NOT NULL REFERENCES customers (id),
  total numeric(12, 2) NOT NULL,
  status text NOT NULL,
  created_at timestamptz NOT NULL
);
INSERT INTO orders
SELECT i, 1 + (i::bigint * 7919) % ${rows.customers}, ((i * 37) % 100000) / 100.0,
       (ARRAY['new', 'paid', 'shipped', 'cancelled'])[1 + i % 4],
       timestamptz '2026-01-01 00:00:00+00' + i * interval '10 seconds'
FROM generate_series(1, ${rows.orders}) AS i;
CREATE INDEX orders_customer ON orders (customer_id);

CREATE TABLE events (
  id bigint PRIMARY KEY,
  order_id integer NOT NULL,
  kind text NOT NULL,
  payload text NOT NULL
);
INSERT INTO events
SELECT i, 1 + (i::bigint * 104729) % ${rows.orders}, 'kind-' || (i % 13),
       md5(i::text) || md5((i * 31)::text) || md5((i * 17)::text)
FROM generate_series(1, ${rows.events}) AS i;
`;
}

/**
 * Creates the databases (dropping any left by an interrupted run first) and fills them; a
 * VACUUM ANALYZE sets hint bits and statistics, so no timed dump is the first to read a page.
 */
export async function createTargetDatabases(
  names: string[],
  log: (line: string) => void,
): Promise<TargetDatabase[]> {
  const created: TargetDatabase[] = [];
  for (const [index, name] of names.entries()) {
    await dropDatabase(name);
    await withClient(serverUrl('postgres'), (client) =>
      client.query(`CREATE DATABASE "${name}" TEMPLATE template0`),
    );
    const rows = rowsOf(index + 1);
    const sizeBytes = await withClient(serverUrl(name), async (client) => {
      await client.query(generationSql(rows));
      await client.query('VACUUM ANALYZE');
      const { rows: size } = await client.query<{ bytes: string }>(
        'SELECT pg_database_size(current_database())::text AS bytes',
      );
      return Number(size[0]?.bytes ?? 0);
    });
    created.push({
      name,
      rowCounts: {
        'public.customers': rows.customers,
        'public.orders': rows.orders,
        'public.events': rows.events,
      },
      sizeBytes,
    });
  }
  log(`  created ${names.length} databases ${names[0]} … ${names.at(-1)}`);
  return created;
}

export async function dropTargetDatabases(names: string[]): Promise<void> {
  for (const name of names) await dropDatabase(name);
}
