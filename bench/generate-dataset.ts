import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { serverUrl, withClient } from './lib/db.js';
import { isMain } from './lib/util.js';

/**
 * A database shaped like the panel's, at a chosen scale, generated inside PostgreSQL with
 * generate_series (inserting from Node would be far slower). Deterministic: every value is a
 * function of the row number (a 32-bit integer hash, no random(), no now()), and the message
 * texts are drawn from a sentence table built by a seeded PRNG. The same scale gives the same
 * rows on any run.
 *
 * Scale 1 ≈ 3 GB on disk with its indexes (6 M messages of 100–300 characters).
 */
export const DATASET_VERSION = 2;

export interface DatasetCounts {
  users: number;
  subscriptions: number;
  payments: number;
  messages: number;
}

export function datasetCounts(scale: number): DatasetCounts {
  const n = (base: number, min: number) => Math.max(min, Math.round(base * scale));
  return {
    users: n(200_000, 100),
    subscriptions: n(300_000, 150),
    payments: n(1_000_000, 500),
    messages: n(5_300_000, 2_000),
  };
}

/** The marker that says which dataset a database holds (a table comment survives dumps). */
export function datasetMarker(scale: number): string {
  return `pgkeep bench dataset v${DATASET_VERSION} scale ${scale} messages ${datasetCounts(scale).messages}`;
}

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

/** Body: five sentences (drawn by hash) cut to 100–300 characters. */
const insertMessages = `
  INSERT INTO "WhatsappMessage" (id, "userId", direction, status, "fromNumber", "toNumber", body, metadata, "createdAt", "deliveredAt", "readAt")
  SELECT g.i,
         g.u,
         CASE WHEN g.i % 2 = 0 THEN 'INBOUND' ELSE 'OUTBOUND' END::"MessageDirection",
         (ARRAY['SENT','DELIVERED','READ','READ','READ','READ','FAILED','QUEUED']::"MessageStatus"[])[1 + pg_temp.h(g.i + 307) % 8],
         '+55' || (11900000000 + pg_temp.h(g.u + 11) % 89999999)::text,
         '+5511' || (30000000 + g.i % 1000)::text,
         left(s1.t || s2.t || s3.t || s4.t || s5.t, 100 + (pg_temp.h(g.i + 311) % 201)::int),
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
  JOIN s s1 ON s1.n = g.k1 JOIN s s2 ON s2.n = g.k2 JOIN s s3 ON s3.n = g.k3
  JOIN s s4 ON s4.n = g.k4 JOIN s s5 ON s5.n = g.k5`;

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

const finishing = (scale: number, counts: DatasetCounts) => `
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
  COMMENT ON TABLE "WhatsappMessage" IS '${datasetMarker(scale)}';
`;

export interface GeneratedDataset {
  database: string;
  scale: number;
  counts: DatasetCounts;
  sizeBytes: number;
  generatedMs: number | null;
  reused: boolean;
}

/** A database's connection URL on the server the dataset goes to (default: the bench's). */
export type DatabaseUrl = (database: string) => string;

/** The scale of the dataset in `database`, from its marker; null when there is none. */
export async function existingDatasetScale(
  database: string,
  url: DatabaseUrl = serverUrl,
): Promise<number | null> {
  const exists = await withClient(url('postgres'), async (client) => {
    const { rows } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    return rows.length > 0;
  });
  if (!exists) return null;
  return withClient(url(database), async (client) => {
    const { rows } = await client.query<{ c: string | null }>(
      `SELECT obj_description(to_regclass('public."WhatsappMessage"'), 'pg_class') AS c`,
    );
    const match = new RegExp(
      `^pgkeep bench dataset v${DATASET_VERSION} scale ([0-9.]+) messages ([0-9]+)$`,
    ).exec(rows[0]?.c ?? '');
    if (!match?.[1]) return null;
    const scale = Number(match[1]);
    // Same generator, same counts: the rows are the same.
    return datasetCounts(scale).messages === Number(match[2]) ? scale : null;
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
 * Makes `database` hold the dataset of `scale`: reused when its marker says so (unless
 * `force`), otherwise dropped and generated anew.
 */
export async function generateDataset(
  database: string,
  scale: number,
  options: { force?: boolean; log?: (line: string) => void; url?: DatabaseUrl } = {},
): Promise<GeneratedDataset> {
  const log = options.log ?? (() => {});
  const url = options.url ?? serverUrl;
  const counts = datasetCounts(scale);
  if (!options.force && (await existingDatasetScale(database, url)) === scale) {
    log(`dataset: reusing ${database} (scale ${scale})`);
    return {
      database,
      scale,
      counts,
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
  try {
    await Promise.all(lanes.map((lane) => lane.connect()));
    await Promise.all(lanes.map((lane) => prepareSession(lane, texts)));
    const [a, b] = lanes;
    await a.query(SCHEMA);
    const half = Math.floor(counts.messages / 2);
    const step = (label: string, work: Promise<unknown>) =>
      work.then(() =>
        log(`dataset: ${label} (${((performance.now() - started) / 1000).toFixed(1)} s)`),
      );
    // Two lanes, one per core: half the messages each; the small tables ride on lane b.
    await Promise.all([
      step(`messages 1..${half}`, a.query(insertMessages, [1, half, counts.users])),
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
          b.query(insertMessages, [half + 1, counts.messages, counts.users]),
        ),
      ),
    ]);
    await Promise.all(
      afterData.map((statements, lane) =>
        (async () => {
          const client = lanes[lane] as pg.Client;
          await client.query("SET maintenance_work_mem = '512MB'");
          for (const statement of statements) await client.query(statement);
        })(),
      ),
    );
    log(`dataset: keys and indexes (${((performance.now() - started) / 1000).toFixed(1)} s)`);
    await a.query(finishing(scale, counts));
    await Promise.all([
      a.query('VACUUM (ANALYZE, FREEZE) "WhatsappMessage"'),
      b.query('VACUUM (ANALYZE, FREEZE) "User", "Subscription", "Payment"'),
    ]);
    await a.query('CHECKPOINT');
  } finally {
    await Promise.all(lanes.map((lane) => lane.end().catch(() => {})));
  }
  const generatedMs = performance.now() - started;
  const sizeBytes = await databaseSize(database, url);
  log(
    `dataset: ${database} scale ${scale}: ${(sizeBytes / 1e9).toFixed(2)} GB in ${(generatedMs / 1000).toFixed(1)} s`,
  );
  return { database, scale, counts, sizeBytes, generatedMs, reused: false };
}

if (isMain(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      scale: { type: 'string', default: '0.03' },
      db: { type: 'string' },
      force: { type: 'boolean', default: false },
    },
  });
  const scale = Number(values.scale);
  if (!(scale > 0)) throw new Error('--scale must be a positive number');
  const database = values.db ?? `pgkeep_bench_s${String(scale).replace('.', '_')}`;
  const result = await generateDataset(database, scale, {
    force: values.force,
    log: (line) => process.stdout.write(`${line}\n`),
  });
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
