import { withClient } from './test-env.js';

/**
 * A small database shaped like the panel's: mixed-case tables, an enum, a view, jsonb,
 * timestamps, foreign keys, a sequence, and a lower-case table beside a mixed-case one.
 */
export async function seedPanelSchema(databaseUrl: string, messages = 2_000): Promise<void> {
  await withClient(databaseUrl, async (client) => {
    await client.query(`
      CREATE TYPE "Role" AS ENUM ('SUPER_ADMIN', 'ADMIN', 'USER');
      CREATE TABLE "User" (
        id serial PRIMARY KEY,
        email text NOT NULL UNIQUE,
        role "Role" NOT NULL DEFAULT 'USER',
        settings jsonb NOT NULL DEFAULT '{}',
        "createdAt" timestamptz NOT NULL DEFAULT now()
      );
      CREATE TABLE "WhatsappMessage" (
        id bigserial PRIMARY KEY,
        "userId" int NOT NULL REFERENCES "User"(id),
        body text NOT NULL,
        metadata jsonb,
        "sentAt" timestamptz NOT NULL
      );
      CREATE TABLE "Payment" (
        id serial PRIMARY KEY,
        "userId" int NOT NULL REFERENCES "User"(id),
        amount numeric(12, 2) NOT NULL,
        note text
      );
      CREATE TABLE user_audit (id serial PRIMARY KEY, what text NOT NULL);
      CREATE SEQUENCE "InvoiceNumber" START 1000;
      CREATE VIEW "AdminUser" AS SELECT id, email FROM "User" WHERE role <> 'USER';
      CREATE INDEX ON "WhatsappMessage" ("userId", "sentAt");

      INSERT INTO "User" (email, role, settings, "createdAt")
      SELECT 'user' || g || '@example.com',
             (ARRAY['SUPER_ADMIN', 'ADMIN', 'USER']::"Role"[])[1 + g % 3],
             jsonb_build_object('lang', CASE WHEN g % 2 = 0 THEN 'pt' ELSE 'en' END, 'n', g),
             timestamptz '2026-01-01 00:00:00+00' + g * interval '1 hour'
      FROM generate_series(1, 200) g;
      INSERT INTO "Payment" ("userId", amount, note)
      SELECT 1 + g % 200, (g * 7.31)::numeric(12, 2), CASE WHEN g % 5 = 0 THEN NULL ELSE 'n''' || g END
      FROM generate_series(1, 500) g;
      INSERT INTO user_audit (what) SELECT 'event ' || g FROM generate_series(1, 50) g;
      SELECT setval('"InvoiceNumber"', 1234);
    `);
    await client.query(
      `INSERT INTO "WhatsappMessage" ("userId", body, metadata, "sentAt")
       SELECT 1 + g % 200,
              'Olá, mensagem número ' || g || E' com "aspas", \\\\barras e tabs\\t ' || repeat('x', g % 150),
              jsonb_build_object('status', 'delivered', 'g', g),
              timestamptz '2026-02-01 00:00:00+00' + g * interval '1 minute'
       FROM generate_series(1, $1::int) g`,
      [messages],
    );
  });
}

export const panelTables = [
  'public.User',
  'public.WhatsappMessage',
  'public.Payment',
  'public.user_audit',
];

/** Every row of a table as text, in primary-key order: what "the data came back" means. */
export async function tableRows(databaseUrl: string, table: string): Promise<string[]> {
  const [schema, name] = table.split('.') as [string, string];
  return withClient(databaseUrl, async (client) => {
    const relation = `${client.escapeIdentifier(schema)}.${client.escapeIdentifier(name)}`;
    const { rows } = await client.query<{ row: string }>(
      `SELECT t::text AS row FROM ${relation} t ORDER BY 1`,
    );
    return rows.map((row) => row.row);
  });
}

export async function existingTables(databaseUrl: string): Promise<string[]> {
  return withClient(databaseUrl, async (client) => {
    const { rows } = await client.query<{ t: string }>(
      `SELECT table_schema || '.' || table_name AS t FROM information_schema.tables
       WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`,
    );
    return rows.map((row) => row.t);
  });
}

/** Every table with all its rows: what "the data" means to a user. */
export async function databaseSnapshot(databaseUrl: string): Promise<Record<string, string[]>> {
  const tables: Record<string, string[]> = {};
  for (const table of await existingTables(databaseUrl)) {
    tables[table] = await tableRows(databaseUrl, table);
  }
  return tables;
}
