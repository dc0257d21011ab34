/**
 * The `many-tables` dataset: 200 tables of four shapes (events, ledger, metrics, documents),
 * their sizes spread over a 1–2.9 weight so that no table holds more than about 1 % of the
 * data, the whole about the size of the panel dataset at the same scale (scale 1 ≈ 3 GB).
 * Made for the parallel-dump comparison (`pg_dump -j` works table by table). Every value is a
 * function of the row number through pg_temp.h (generate-dataset.ts), as in the panel dataset.
 */

export const MANY_TABLES_COUNT = 200;

export type TableShape = 'events' | 'ledger' | 'metrics' | 'documents';
const SHAPES: readonly TableShape[] = ['events', 'ledger', 'metrics', 'documents'];

/** Rows per unit of weight at scale 1; the shapes' rows differ in size (≈ bytes with indexes). */
const BASE_ROWS: Record<TableShape, number> = {
  // ≈ 300 B a row with its two indexes
  events: 26_000,
  // ≈ 150 B
  ledger: 50_000,
  // ≈ 165 B
  metrics: 45_000,
  // ≈ 630 B
  documents: 12_000,
};

export interface ManyTable {
  name: string;
  shape: TableShape;
  rows: number;
}

/** The tables at `scale`: name, shape and row count, in creation order. */
export function manyTables(scale: number): ManyTable[] {
  return Array.from({ length: MANY_TABLES_COUNT }, (_, i) => {
    const shape = SHAPES[i % SHAPES.length] as TableShape;
    // 1.0 … 2.9, spread over the tables by a stride coprime with 20.
    const weight = 1 + ((i * 7) % 20) / 10;
    const rows = Math.max(50, Math.round(BASE_ROWS[shape] * weight * scale));
    return { name: `${shape}_${String(i).padStart(3, '0')}`, shape, rows };
  });
}

/** The table whose comment carries the dataset's marker. */
export const MANY_TABLES_MARKER_TABLE = 'events_000';

const q = (name: string) => `"${name}"`;

/** CREATE TABLE and the INSERT of one table (the row count inlined: a whole number). */
export function createAndFill(table: ManyTable, seed: number): string[] {
  const t = q(table.name);
  const n = table.rows;
  // Each table its own hash offsets: no two tables hold the same rows.
  const h = (k: number) => `pg_temp.h(i * 7 + ${seed * 1000 + k})`;
  switch (table.shape) {
    case 'events':
      return [
        `CREATE TABLE ${t} (id bigint NOT NULL, account int NOT NULL, kind text NOT NULL,
           at timestamptz NOT NULL, payload jsonb NOT NULL, note text NOT NULL)`,
        `INSERT INTO ${t}
         SELECT i, 1 + ${h(1)} % 50000,
                (ARRAY['login','logout','view','click','purchase','refund','signup','error'])[1 + ${h(2)} % 8],
                timestamptz '2024-01-01 00:00:00+00' + i * interval '3 seconds',
                jsonb_build_object('ip', '10.' || (${h(3)} % 256) || '.' || (i % 256) || '.7',
                                   'ua', (ARRAY['ios','android','web'])[1 + i % 3], 'v', 1 + i % 9),
                s.t
         FROM generate_series(1, ${n}) i JOIN s ON s.n = ${h(4)} % 32768`,
        `ALTER TABLE ${t} ADD PRIMARY KEY (id)`,
        `CREATE INDEX ON ${t} (account, at)`,
      ];
    case 'ledger':
      return [
        `CREATE TABLE ${t} (id bigint NOT NULL, account int NOT NULL, amount numeric(12, 2) NOT NULL,
           currency char(3) NOT NULL, status text NOT NULL, ref text NOT NULL,
           created timestamptz NOT NULL, settled timestamptz)`,
        `INSERT INTO ${t}
         SELECT i, 1 + ${h(1)} % 50000, ((${h(2)} % 1000000) / 100.0)::numeric(12, 2),
                (ARRAY['BRL','BRL','USD','EUR'])[1 + i % 4],
                (ARRAY['open','settled','settled','settled','void'])[1 + ${h(3)} % 5],
                lpad(to_hex(${h(4)}), 8, '0') || lpad(to_hex(${h(5)}), 8, '0'),
                timestamptz '2023-06-01 00:00:00+00' + i * interval '11 seconds',
                CASE WHEN i % 5 <> 0 THEN timestamptz '2023-06-01 00:00:00+00' + i * interval '11 seconds' + interval '2 days' END
         FROM generate_series(1, ${n}) i`,
        `ALTER TABLE ${t} ADD PRIMARY KEY (id)`,
        `CREATE INDEX ON ${t} (account)`,
      ];
    case 'metrics':
      return [
        `CREATE TABLE ${t} (id bigint NOT NULL, at timestamptz NOT NULL, host int NOT NULL,
           cpu real NOT NULL, mem real NOT NULL, disk real NOT NULL, net_in bigint NOT NULL,
           net_out bigint NOT NULL, load1 real NOT NULL, load5 real NOT NULL, load15 real NOT NULL,
           errors int NOT NULL, requests int NOT NULL, p99 real NOT NULL)`,
        `INSERT INTO ${t}
         SELECT i, timestamptz '2024-03-01 00:00:00+00' + i * interval '10 seconds', ${h(1)} % 500,
                (${h(2)} % 10000) / 100.0, (${h(3)} % 10000) / 100.0, (${h(4)} % 10000) / 100.0,
                ${h(5)} % 100000000, ${h(6)} % 100000000,
                (${h(7)} % 800) / 100.0, (${h(8)} % 800) / 100.0, (${h(9)} % 800) / 100.0,
                (${h(10)} % 20)::int, (${h(11)} % 5000)::int, (${h(12)} % 200000) / 100.0
         FROM generate_series(1, ${n}) i`,
        `ALTER TABLE ${t} ADD PRIMARY KEY (id)`,
        `CREATE INDEX ON ${t} (at)`,
      ];
    case 'documents':
      return [
        `CREATE TABLE ${t} (id int NOT NULL, owner int NOT NULL, title text NOT NULL,
           body text NOT NULL, tags text[] NOT NULL, updated timestamptz NOT NULL)`,
        `INSERT INTO ${t}
         SELECT i, 1 + ${h(1)} % 50000, left(s1.t, 60),
                left(s2.t || s3.t || s4.t || s5.t || s6.t, 200 + (${h(2)} % 300)::int),
                ARRAY[(ARRAY['draft','final','legal','hr','sales','ops'])[1 + i % 6],
                      (ARRAY['2023','2024','2025'])[1 + ${h(3)} % 3]],
                timestamptz '2022-01-01 00:00:00+00' + i * interval '77 seconds'
         FROM generate_series(1, ${n}) i
         JOIN s s1 ON s1.n = ${h(4)} % 32768 JOIN s s2 ON s2.n = ${h(5)} % 32768
         JOIN s s3 ON s3.n = ${h(6)} % 32768 JOIN s s4 ON s4.n = ${h(7)} % 32768
         JOIN s s5 ON s5.n = ${h(8)} % 32768 JOIN s s6 ON s6.n = ${h(9)} % 32768`,
        `ALTER TABLE ${t} ADD PRIMARY KEY (id)`,
        `CREATE INDEX ON ${t} (owner)`,
      ];
  }
}
