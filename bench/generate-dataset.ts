import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createAndFill, MANY_TABLES_MARKER_TABLE, manyTables } from './lib/dataset-many-tables.js';
import { serverUrl, withClient } from './lib/db.js';
import { isMain } from './lib/util.js';

/**
 * A database shaped like the panel's, at a chosen scale, generated inside PostgreSQL with
 * generate_series (inserting from Node would be far slower). Deterministic: every value is a
 * function of the row number (a 32-bit integer hash, no random(), no now()), and the message
 * texts are drawn from a sentence table built by a seeded PRNG. The same scale gives the same
 * rows on any run.
 *
 * Three datasets (`--dataset`):
 * - `panel`: scale 1 ≈ 3 GB on disk with its indexes (5.3 M messages of 100–300 characters).
 * - `long-bodies`: the panel's tables with fewer messages of 300–900 characters each, so the
 *   messages' heap is large against their row count; about the panel's size at the same scale
 *   (scale 0.3 ≈ 0.9 GB).
 * - `many-tables`: 200 tables of four shapes, none larger than about 1 % of the whole, about
 *   the panel's size at the same scale (bench/lib/dataset-many-tables.ts).
 * Each carries a marker (a table comment, which survives dumps) naming the dataset and its
 * scale, so that a database is reused only when it holds the same rows.
 */
export const DATASET_VERSION = 2;
/** The marker versions of the other datasets (bumped when their rows change). */
const LONG_BODIES_VERSION = 1;
const MANY_TABLES_VERSION = 1;

export const DATASETS = ['panel', 'long-bodies', 'many-tables'] as const;
export type DatasetKind = (typeof DATASETS)[number];

export function isDatasetKind(value: string): value is DatasetKind {
  return (DATASETS as readonly string[]).includes(value);
}

/**
 * The bench's database for a dataset and scale: `pgkeep_bench_s0_3` for the panel dataset
 * (the name it always had), `pgkeep_bench_long_bodies_s0_3` and so on for the others.
 */
export function datasetDatabaseName(kind: DatasetKind, scale: number): string {
  const scaleTag = `s${String(scale).replace('.', '_')}`;
  return kind === 'panel'
    ? `pgkeep_bench_${scaleTag}`
    : `pgkeep_bench_${kind.replace('-', '_')}_${scaleTag}`;
}

export interface DatasetCounts {
  users: number;
  subscriptions: number;
  payments: number;
  messages: number;
}

/** Rows of the panel's tables (`panel` and `long-bodies`). */
export function datasetCounts(scale: number, kind: DatasetKind = 'panel'): DatasetCounts {
  const n = (base: number, min: number) => Math.max(min, Math.round(base * scale));
  return {
    users: n(200_000, 100),
    subscriptions: n(300_000, 150),
    payments: n(1_000_000, 500),
    // Long bodies: ≈ 880 B a message with its indexes against ≈ 480 B, for about the same size.
    messages: kind === 'long-bodies' ? n(2_900_000, 1_000) : n(5_300_000, 2_000),
  };
}

/** What the results record of a dataset's rows: the panel's tables, or the many tables'. */
export function datasetRowCounts(scale: number, kind: DatasetKind): Record<string, number> {
  if (kind !== 'many-tables') return { ...datasetCounts(scale, kind) };
  const tables = manyTables(scale);
  return { tables: tables.length, rows: tables.reduce((sum, table) => sum + table.rows, 0) };
}

/** The marker that says which dataset a database holds (a table comment survives dumps). */
export function datasetMarker(scale: number, kind: DatasetKind = 'panel'): string {
  if (kind === 'many-tables') {
    const counts = datasetRowCounts(scale, kind);
    return `pgkeep bench dataset many-tables v${MANY_TABLES_VERSION} scale ${scale} tables ${counts.tables} rows ${counts.rows}`;
  }
  const messages = datasetCounts(scale, kind).messages;
  return kind === 'long-bodies'
    ? `pgkeep bench dataset long-bodies v${LONG_BODIES_VERSION} scale ${scale} messages ${messages}`
    : `pgkeep bench dataset v${DATASET_VERSION} scale ${scale} messages ${messages}`;
}

/** The table whose comment holds the marker. */
const markerTable = (kind: DatasetKind) =>
  kind === 'many-tables' ? MANY_TABLES_MARKER_TABLE : 'WhatsappMessage';

const WORDS = (
  'olá bom dia boa tarde noite obrigado obrigada por favor pedido entrega pagamento boleto ' +
  'pix cartão assinatura plano mensal anual renovação cancelamento suporte atendimento ' +
  'cliente mensagem número código confirmação enviado recebido hoje amanhã ontem semana ' +
  'valor total desconto promoção produto serviço conta acesso senha login cadastro email ' +
  'telefone endereço cidade prazo status aguardando aprovado recusado reembolso nota ' +
  'fiscal fatura vencimento horário agenda reunião consulta retorno dúvida problema ' +
  'resolvido aberto fechado hello thanks order delivery payment invoice subscription ' +
  'monthly yearly renewal support ticket customer message number code confirm sent ' +
  'received today tomorrow yesterday week price total discount offer product service ' +
  'account access password signup address city deadline waiting approved refund receipt ' +
  'schedule meeting question issue solved open closed please check link app update new ' +
  'version error try again later sorry minute hour we you they can will need want send ' +
  'call back more info about the your our this that with from for and but not just'
).split(' ');

/** mulberry32: a small seeded PRNG, so the sentence table is the same on every run. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

export const SENTENCE_COUNT = 32_768;

/** Sentences of 60–100 characters: five of them always cover a 300-character body. */
export function sentences(count = SENTENCE_COUNT, seed = 20260122): string[] {
  const next = mulberry32(seed);
  const out: string[] = [];
  for (let i = 0; i < count; i += 1) {
    const target = 60 + Math.floor(next() * 41);
    let text = '';
    while (text.length < target) {
      const word = WORDS[Math.floor(next() * WORDS.length)] ?? 'ok';
      text = text ? `${text} ${word}` : word.charAt(0).toUpperCase() + word.slice(1);
      if (next() < 0.08) text += next() < 0.5 ? ',' : ` ${Math.floor(next() * 10_000)}`;
    }
    out.push(`${text.slice(0, 100)}${next() < 0.3 ? '!' : '.'} `);
  }
  return out;
}

/** Per-session helpers: a 32-bit integer hash (inlined by the planner) and the sentences. */
async function prepareSession(client: pg.Client, texts: string[]): Promise<void> {
  await client.query(`
    CREATE FUNCTION pg_temp.h(x bigint) RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
      SELECT (((((x & 4294967295) # ((x & 4294967295) >> 16)) * 73244475 & 4294967295)
               # ((((x & 4294967295) # ((x & 4294967295) >> 16)) * 73244475 & 4294967295) >> 16))
              * 73244475 & 4294967295)
    $$`);
  await client.query('CREATE TEMP TABLE s (n int PRIMARY KEY, t text NOT NULL)');
  await client.query(
    'INSERT INTO s (n, t) SELECT n - 1, t FROM unnest($1::text[]) WITH ORDINALITY AS u(t, n)',
    [texts],
  );
  await client.query('ANALYZE s');
  // Paragraphs of five sentences (305–505 characters), for the long bodies.
  await client.query(`
    CREATE TEMP TABLE p AS
    SELECT g.n, s1.t || s2.t || s3.t || s4.t || s5.t AS t
    FROM generate_series(0, ${SENTENCE_COUNT - 1}) g(n)
    JOIN s s1 ON s1.n = pg_temp.h(g.n * 5 + 900001) % ${SENTENCE_COUNT}
    JOIN s s2 ON s2.n = pg_temp.h(g.n * 5 + 900002) % ${SENTENCE_COUNT}
    JOIN s s3 ON s3.n = pg_temp.h(g.n * 5 + 900003) % ${SENTENCE_COUNT}
    JOIN s s4 ON s4.n = pg_temp.h(g.n * 5 + 900004) % ${SENTENCE_COUNT}
    JOIN s s5 ON s5.n = pg_temp.h(g.n * 5 + 900005) % ${SENTENCE_COUNT}`);
  await client.query('ALTER TABLE p ADD PRIMARY KEY (n)');
  await client.query('ANALYZE p');
  // The inserts are large and single: give them room, and skip the fsync per commit.
  await client.query("SET work_mem = '64MB'");
  await client.query('SET synchronous_commit = off');
}

const SCHEMA = `
  CREATE TYPE "Role" AS ENUM ('SUPER_ADMIN', 'ADMIN', 'AGENT', 'USER');
  CREATE TYPE "SubscriptionStatus" AS ENUM ('TRIAL', 'ACTIVE', 'PAST_DUE', 'CANCELLED', 'EXPIRED');
  CREATE TYPE "PaymentStatus" AS ENUM ('PENDING', 'PAID', 'FAILED', 'REFUNDED');
  CREATE TYPE "MessageDirection" AS ENUM ('INBOUND', 'OUTBOUND');
  CREATE TYPE "MessageStatus" AS ENUM ('QUEUED', 'SENT', 'DELIVERED', 'READ', 'FAILED');
  CREATE TABLE "User" (
    id serial NOT NULL,
    email text NOT NULL,
    name text NOT NULL,
    phone text NOT NULL,
    role "Role" NOT NULL DEFAULT 'USER',
    settings jsonb NOT NULL DEFAULT '{}',
    "createdAt" timestamptz NOT NULL,
    "updatedAt" timestamptz NOT NULL
  );
  CREATE TABLE "Subscription" (
    id serial NOT NULL,
    "userId" int NOT NULL,
    plan text NOT NULL,
    status "SubscriptionStatus" NOT NULL,
    "priceCents" int NOT NULL,
    "autoRenew" boolean NOT NULL,
    "startedAt" timestamptz NOT NULL,
    "endsAt" timestamptz,
    "createdAt" timestamptz NOT NULL
  );
  CREATE TABLE "Payment" (
    id serial NOT NULL,
    "userId" int NOT NULL,
    "subscriptionId" int,
    amount numeric(12, 2) NOT NULL,
    currency char(3) NOT NULL,
    status "PaymentStatus" NOT NULL,
    provider text NOT NULL,
    "providerRef" text NOT NULL,
    metadata jsonb NOT NULL,
    "createdAt" timestamptz NOT NULL,
    "paidAt" timestamptz
  );
  CREATE TABLE "WhatsappMessage" (
    id bigserial NOT NULL,
    "userId" int NOT NULL,
    direction "MessageDirection" NOT NULL,
    status "MessageStatus" NOT NULL,
    "fromNumber" text NOT NULL,
    "toNumber" text NOT NULL,
    body text NOT NULL,
    metadata jsonb NOT NULL,
    "createdAt" timestamptz NOT NULL,
    "deliveredAt" timestamptz,
    "readAt" timestamptz
  );
  CREATE SEQUENCE "InvoiceNumber" START 1000;
`;

const insertUsers = `
  INSERT INTO "User" (id, email, name, phone, role, settings, "createdAt", "updatedAt")
  SELECT i,
         'user' || i || '@example.com',
         (ARRAY['Ana','Bruno','Carla','Diego','Elisa','Felipe','Gabriela','Hugo','Isabel','João',
                'Karina','Lucas','Marina','Nuno','Olívia','Pedro'])[1 + pg_temp.h(i) % 16]
           || ' ' ||
         (ARRAY['Silva','Santos','Oliveira','Souza','Lima','Pereira','Costa','Almeida','Ferreira',
                'Rodrigues','Gomes','Martins'])[1 + pg_temp.h(i + 7) % 12],
         '+55' || (11900000000 + pg_temp.h(i + 11) % 89999999)::text,
         (ARRAY['SUPER_ADMIN','ADMIN','AGENT','USER','USER','USER','USER','USER']::"Role"[])[1 + pg_temp.h(i + 13) % 8],
         jsonb_build_object('lang', (ARRAY['pt-BR','en','es'])[1 + i % 3],
                            'notifications', i % 4 <> 0, 'theme', CASE WHEN i % 2 = 0 THEN 'dark' ELSE 'light' END),
         timestamptz '2023-01-01 00:00:00+00' + i * interval '97 seconds',
         timestamptz '2023-01-01 00:00:00+00' + i * interval '97 seconds' + (pg_temp.h(i + 17) % 864000) * interval '1 minute'
  FROM generate_series(1, $1::int) i`;

const insertSubscriptions = `
  INSERT INTO "Subscription" (id, "userId", plan, status, "priceCents", "autoRenew", "startedAt", "endsAt", "createdAt")
  SELECT i,
         1 + pg_temp.h(i + 101) % $2::int,
         (ARRAY['starter','pro','business','enterprise'])[1 + pg_temp.h(i + 103) % 4],
         (ARRAY['TRIAL','ACTIVE','ACTIVE','ACTIVE','PAST_DUE','CANCELLED','EXPIRED']::"SubscriptionStatus"[])[1 + pg_temp.h(i + 107) % 7],
         (ARRAY[4900, 9900, 19900, 49900])[1 + pg_temp.h(i + 103) % 4],
         pg_temp.h(i + 109) % 5 <> 0,
         timestamptz '2023-02-01 00:00:00+00' + i * interval '61 seconds',
         CASE WHEN i % 3 = 0 THEN NULL ELSE timestamptz '2024-02-01 00:00:00+00' + i * interval '61 seconds' END,
         timestamptz '2023-02-01 00:00:00+00' + i * interval '61 seconds'
  FROM generate_series(1, $1::int) i`;

const insertPayments = `
  INSERT INTO "Payment" (id, "userId", "subscriptionId", amount, currency, status, provider, "providerRef", metadata, "createdAt", "paidAt")
  SELECT i,
         1 + pg_temp.h(i + 201) % $2::int,
         CASE WHEN i % 10 = 0 THEN NULL ELSE 1 + pg_temp.h(i + 203) % $3::int END,
         ((pg_temp.h(i + 205) % 100000) / 100.0)::numeric(12, 2),
         (ARRAY['BRL','BRL','BRL','USD','EUR'])[1 + i % 5],
         (ARRAY['PAID','PAID','PAID','PAID','PENDING','FAILED','REFUNDED']::"PaymentStatus"[])[1 + pg_temp.h(i + 207) % 7],
         (ARRAY['stripe','mercadopago','pix','boleto'])[1 + pg_temp.h(i + 209) % 4],
         'pay_' || lpad(to_hex(pg_temp.h(i + 211)), 8, '0') || lpad(to_hex(pg_temp.h(i + 213)), 8, '0'),
         jsonb_build_object('installments', 1 + i % 12, 'ip', '10.' || (i % 256) || '.' || (pg_temp.h(i) % 256) || '.1',
                            'coupon', CASE WHEN i % 9 = 0 THEN 'PROMO' || (i % 50) END),
         timestamptz '2023-03-01 00:00:00+00' + i * interval '23 seconds',
         CASE WHEN i % 7 < 4 THEN timestamptz '2023-03-01 00:00:00+00' + i * interval '23 seconds' + interval '90 seconds' END
  FROM generate_series(1, $1::int) i`;

/**
 * Body: five sentences (drawn by hash) cut to 100–300 characters; with long bodies, three
 * paragraphs of five sentences (table p, see prepareSession) cut to 300–900 characters.
 */
const insertMessages = (kind: DatasetKind) => `
  INSERT INTO "WhatsappMessage" (id, "userId", direction, status, "fromNumber", "toNumber", body, metadata, "createdAt", "deliveredAt", "readAt")
  SELECT g.i,
         g.u,
         CASE WHEN g.i % 2 = 0 THEN 'INBOUND' ELSE 'OUTBOUND' END::"MessageDirection",
         (ARRAY['SENT','DELIVERED','READ','READ','READ','READ','FAILED','QUEUED']::"MessageStatus"[])[1 + pg_temp.h(g.i + 307) % 8],
         '+55' || (11900000000 + pg_temp.h(g.u + 11) % 89999999)::text,
         '+5511' || (30000000 + g.i % 1000)::text,
         ${kind === 'long-bodies' ? 'left(s1.t || s2.t || s3.t, 300 + (pg_temp.h(g.i + 311) % 601)::int)' : 'left(s1.t || s2.t || s3.t || s4.t || s5.t, 100 + (pg_temp.h(g.i + 311) % 201)::int)'},
         jsonb_build_object('waId', 'wamid.' || lpad(to_hex(pg_temp.h(g.i + 313)), 8, '0') || lpad(to_hex(pg_temp.h(g.i + 317)), 8, '0'),
                            'type', 'text', 'session', g.i / 40,
                            'agent', CASE WHEN g.i % 2 = 1 THEN 'agent' || (g.i % 37) END),
         g.at,
         CASE WHEN g.i % 8 < 7 THEN g.at + (pg_temp.h(g.i + 331) % 60) * interval '1 second' END,
         CASE WHEN g.i % 8 < 5 THEN g.at + (pg_temp.h(g.i + 337) % 3600) * interval '1 second' END
  FROM (
    SELECT i, (1 + pg_temp.h(i + 301) % $3::int)::int AS u,
           timestamptz '2024-01-01 00:00:00+00' + i * interval '5 seconds' AS at,
           pg_temp.h(i * 5 + 1) % ${SENTENCE_COUNT} AS k1, pg_temp.h(i * 5 + 2) % ${SENTENCE_COUNT} AS k2,
           pg_temp.h(i * 5 + 3) % ${SENTENCE_COUNT} AS k3, pg_temp.h(i * 5 + 4) % ${SENTENCE_COUNT} AS k4,
           pg_temp.h(i * 5 + 5) % ${SENTENCE_COUNT} AS k5
    FROM generate_series($1::bigint, $2::bigint) i
  ) g
  ${
    kind === 'long-bodies'
      ? 'JOIN p s1 ON s1.n = g.k1 JOIN p s2 ON s2.n = g.k2 JOIN p s3 ON s3.n = g.k3'
      : `JOIN s s1 ON s1.n = g.k1 JOIN s s2 ON s2.n = g.k2 JOIN s s3 ON s3.n = g.k3
  JOIN s s4 ON s4.n = g.k4 JOIN s s5 ON s5.n = g.k5`
  }`;

/** Keys, foreign keys and indexes come after the data (as pg_restore does), split in two lanes. */
const afterData: string[][] = [
  [
    'ALTER TABLE "WhatsappMessage" ADD CONSTRAINT "WhatsappMessage_pkey" PRIMARY KEY (id)',
    'CREATE INDEX "WhatsappMessage_userId_createdAt_idx" ON "WhatsappMessage" ("userId", "createdAt")',
    'ALTER TABLE "Payment" ADD CONSTRAINT "Payment_pkey" PRIMARY KEY (id)',
    'CREATE INDEX "Payment_userId_idx" ON "Payment" ("userId")',
  ],
  [
    'ALTER TABLE "User" ADD CONSTRAINT "User_pkey" PRIMARY KEY (id)',
    'CREATE UNIQUE INDEX "User_email_key" ON "User" (email)',
    'ALTER TABLE "Subscription" ADD CONSTRAINT "Subscription_pkey" PRIMARY KEY (id)',
    'CREATE INDEX "Subscription_userId_idx" ON "Subscription" ("userId")',
    'CREATE INDEX "Payment_createdAt_idx" ON "Payment" ("createdAt")',
    `CREATE INDEX "WhatsappMessage_pending_idx" ON "WhatsappMessage" (status, "createdAt") WHERE status IN ('QUEUED', 'FAILED')`,
    'CREATE INDEX "WhatsappMessage_createdAt_idx" ON "WhatsappMessage" ("createdAt")',
  ],
];

const finishing = (scale: number, counts: DatasetCounts, kind: DatasetKind) => `
  ALTER TABLE "Subscription" ADD CONSTRAINT "Subscription_userId_fkey" FOREIGN KEY ("userId") REFERENCES "User"(id);
  ALTER TABLE "Payment" ADD CONSTRAINT "Payment_userId_fkey" FOREIGN KEY ("userId") REFERENCES "User"(id);
  ALTER TABLE "Payment" ADD CONSTRAINT "Payment_subscriptionId_fkey" FOREIGN KEY ("subscriptionId") REFERENCES "Subscription"(id);
  ALTER TABLE "WhatsappMessage" ADD CONSTRAINT "WhatsappMessage_userId_fkey" FOREIGN KEY ("userId") REFERENCES "User"(id);
  SELECT setval('"User_id_seq"', ${counts.users});
  SELECT setval('"Subscription_id_seq"', ${counts.subscriptions});
  SELECT setval('"Payment_id_seq"', ${counts.payments});
  SELECT setval('"WhatsappMessage_id_seq"', ${counts.messages});
  SELECT setval('"InvoiceNumber"', ${1000 + Math.floor(counts.payments * 0.6)});
  CREATE VIEW "ActiveSubscription" AS
    SELECT s.id, s."userId", u.email, s.plan, s."endsAt"
    FROM "Subscription" s JOIN "User" u ON u.id = s."userId"
    WHERE s.status IN ('ACTIVE', 'TRIAL');
  COMMENT ON TABLE "WhatsappMessage" IS '${datasetMarker(scale, kind)}';
`;

export interface GeneratedDataset {
  database: string;
  kind: DatasetKind;
  scale: number;
  /** The panel's tables' rows, or `tables` and `rows` of the many tables. */
  counts: Record<string, number>;
  /** Tables of the dataset (what a parallel dump or restore can spread over). */
  tables: number;
  sizeBytes: number;
  generatedMs: number | null;
  reused: boolean;
}

/** A database's connection URL on the server the dataset goes to (default: the bench's). */
export type DatabaseUrl = (database: string) => string;

/**
 * The scale of the `kind` dataset in `database`, from its marker; null when there is none or
 * it names another dataset, or counts that this generator would not make at that scale.
 */
export async function existingDatasetScale(
  database: string,
  url: DatabaseUrl = serverUrl,
  kind: DatasetKind = 'panel',
): Promise<number | null> {
  const exists = await withClient(url('postgres'), async (client) => {
    const { rows } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    return rows.length > 0;
  });
  if (!exists) return null;
  return withClient(url(database), async (client) => {
    const { rows } = await client.query<{ c: string | null }>(
      `SELECT obj_description(to_regclass($1), 'pg_class') AS c`,
      [`public."${markerTable(kind)}"`],
    );
    const comment = rows[0]?.c ?? '';
    const match = / scale ([0-9.]+) /.exec(comment);
    if (!match?.[1]) return null;
    const scale = Number(match[1]);
    // Same generator, same marker (dataset, version, counts): the rows are the same.
    return datasetMarker(scale, kind) === comment ? scale : null;
  });
}

export async function databaseSize(
  database: string,
  url: DatabaseUrl = serverUrl,
): Promise<number> {
  return withClient(url(database), async (client) => {
    const { rows } = await client.query<{ n: string }>(
      'SELECT pg_database_size(current_database())::text AS n',
    );
    return Number(rows[0]?.n ?? 0);
  });
}

/**
 * A kept dataset that the restore section replaced (pgkeep's restore swaps a freshly loaded copy
 * in) has no visibility map and no statistics, where the generated one was vacuumed: its
 * count(*) reads every heap page instead of the index, so a later run's backups would be
 * measured on a database unlike the generated one (and unlike one autovacuum looks after; the
 * shared server runs with autovacuum off). Vacuumed as the generator leaves it, when under 90 %
 * of its pages are all-visible.
 */
async function vacuumIfRestored(
  database: string,
  url: DatabaseUrl,
  log: (line: string) => void,
): Promise<void> {
  await withClient(url(database), async (client) => {
    const { rows } = await client.query<{ visible: string | null }>(
      `SELECT sum(relallvisible)::float8 / nullif(sum(relpages), 0) AS visible
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind = 'r' AND n.nspname = 'public'`,
    );
    const visible = Number(rows[0]?.visible ?? 1);
    if (visible >= 0.9) return;
    const started = performance.now();
    await client.query('VACUUM (ANALYZE, FREEZE)');
    log(
      `dataset: vacuumed (${Math.round(visible * 100)} % of its pages were all-visible, as after a restore) in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
  });
}

const tableCount = (kind: DatasetKind) => (kind === 'many-tables' ? manyTables(1).length : 4);

/**
 * Makes `database` hold the `kind` dataset (default `panel`) of `scale`: reused when its marker
 * says so (unless `force`), otherwise dropped and generated anew.
 */
export async function generateDataset(
  database: string,
  scale: number,
  options: {
    force?: boolean;
    log?: (line: string) => void;
    url?: DatabaseUrl;
    kind?: DatasetKind;
  } = {},
): Promise<GeneratedDataset> {
  const log = options.log ?? (() => {});
  const url = options.url ?? serverUrl;
  const kind = options.kind ?? 'panel';
  const counts = datasetRowCounts(scale, kind);
  const tables = tableCount(kind);
  if (!options.force && (await existingDatasetScale(database, url, kind)) === scale) {
    log(`dataset: reusing ${database} (${kind}, scale ${scale})`);
    await vacuumIfRestored(database, url, log);
    return {
      database,
      kind,
      scale,
      counts,
      tables,
      sizeBytes: await databaseSize(database, url),
      generatedMs: null,
      reused: true,
    };
  }
  const started = performance.now();
  await withClient(url('postgres'), async (client) => {
    await client.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
    await client.query(`CREATE DATABASE "${database}" TEMPLATE template0 ENCODING 'UTF8'`);
  });
  const texts = sentences();
  const lanes = [new pg.Client(url(database)), new pg.Client(url(database))] as const;
  const step = (label: string, work: Promise<unknown>) =>
    work.then(() =>
      log(`dataset: ${label} (${((performance.now() - started) / 1000).toFixed(1)} s)`),
    );
  try {
    await Promise.all(lanes.map((lane) => lane.connect()));
    await Promise.all(lanes.map((lane) => prepareSession(lane, texts)));
    if (kind === 'many-tables') await fillManyTables(lanes, scale, step);
    else await fillPanel(lanes, scale, kind, step);
    await lanes[0].query('CHECKPOINT');
  } finally {
    await Promise.all(lanes.map((lane) => lane.end().catch(() => {})));
  }
  const generatedMs = performance.now() - started;
  const sizeBytes = await databaseSize(database, url);
  log(
    `dataset: ${database} (${kind}) scale ${scale}: ${(sizeBytes / 1e9).toFixed(2)} GB in ${(generatedMs / 1000).toFixed(1)} s`,
  );
  return { database, kind, scale, counts, tables, sizeBytes, generatedMs, reused: false };
}

type Step = (label: string, work: Promise<unknown>) => Promise<void>;

/** The panel's tables (`panel`, `long-bodies`), on two lanes (one per core). */
async function fillPanel(
  lanes: readonly [pg.Client, pg.Client],
  scale: number,
  kind: DatasetKind,
  step: Step,
): Promise<void> {
  const counts = datasetCounts(scale, kind);
  const [a, b] = lanes;
  await a.query(SCHEMA);
  const half = Math.floor(counts.messages / 2);
  const messages = insertMessages(kind);
  // Two lanes, one per core: half the messages each; the small tables ride on lane b.
  await Promise.all([
    step(`messages 1..${half}`, a.query(messages, [1, half, counts.users])),
    step(
      'users, subscriptions, payments',
      (async () => {
        await b.query(insertUsers, [counts.users]);
        await b.query(insertSubscriptions, [counts.subscriptions, counts.users]);
        await b.query(insertPayments, [counts.payments, counts.users, counts.subscriptions]);
      })(),
    ).then(() =>
      step(
        `messages ${half + 1}..${counts.messages}`,
        b.query(messages, [half + 1, counts.messages, counts.users]),
      ),
    ),
  ]);
  await step(
    'keys and indexes',
    Promise.all(
      afterData.map(async (statements, lane) => {
        const client = lanes[lane] as pg.Client;
        await client.query("SET maintenance_work_mem = '512MB'");
        for (const statement of statements) await client.query(statement);
      }),
    ),
  );
  await a.query(finishing(scale, counts, kind));
  await Promise.all([
    a.query('VACUUM (ANALYZE, FREEZE) "WhatsappMessage"'),
    b.query('VACUUM (ANALYZE, FREEZE) "User", "Subscription", "Payment"'),
  ]);
}

/** The 200 tables, each made whole (create, fill, keys) by one of two lanes in turn. */
async function fillManyTables(
  lanes: readonly [pg.Client, pg.Client],
  scale: number,
  step: Step,
): Promise<void> {
  const tables = manyTables(scale);
  await step(
    `${tables.length} tables`,
    Promise.all(
      lanes.map(async (client, lane) => {
        await client.query("SET maintenance_work_mem = '256MB'");
        for (const [index, table] of tables.entries()) {
          if (index % lanes.length !== lane) continue;
          for (const statement of createAndFill(table, index)) await client.query(statement);
        }
      }),
    ),
  );
  await lanes[0].query(
    `COMMENT ON TABLE "${MANY_TABLES_MARKER_TABLE}" IS '${datasetMarker(scale, 'many-tables')}'`,
  );
  await Promise.all(
    lanes.map((client, lane) =>
      client.query(
        `VACUUM (ANALYZE, FREEZE) ${tables
          .filter((_, index) => index % lanes.length === lane)
          .map((table) => `"${table.name}"`)
          .join(', ')}`,
      ),
    ),
  );
}

if (isMain(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      scale: { type: 'string', default: '0.03' },
      dataset: { type: 'string', default: 'panel' },
      db: { type: 'string' },
      force: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      [
        'npx tsx bench/generate-dataset.ts [--scale 0.03] [--dataset panel|long-bodies|many-tables]',
        '                                  [--db NAME] [--force]',
        '(default database: pgkeep_bench_s0_03 for panel, pgkeep_bench_<dataset>_s0_03 otherwise)',
        '',
      ].join('\n'),
    );
    process.exit(0);
  }
  const scale = Number(values.scale);
  if (!(scale > 0)) throw new Error('--scale must be a positive number');
  const kind = values.dataset;
  if (!isDatasetKind(kind)) throw new Error(`--dataset must be one of ${DATASETS.join(', ')}`);
  const database = values.db ?? datasetDatabaseName(kind, scale);
  const result = await generateDataset(database, scale, {
    kind,
    force: values.force,
    log: (line) => process.stdout.write(`${line}\n`),
  });
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
