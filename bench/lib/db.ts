import { execFile } from 'node:child_process';
import pg from 'pg';

/** The PostgreSQL server the bench runs against (trust authentication on these machines). */
export const PG_HOST = process.env.BENCH_PGHOST ?? '127.0.0.1';
export const PG_PORT = Number(process.env.BENCH_PGPORT ?? 5432);
export const PG_USER = process.env.BENCH_PGUSER ?? 'postgres';

export function serverUrl(database: string): string {
  return `postgres://${encodeURIComponent(PG_USER)}@${PG_HOST}:${PG_PORT}/${encodeURIComponent(database)}`;
}

/** Environment for the PostgreSQL client tools (no password: trust, or PGPASSWORD inherited). */
export function toolEnv(database: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    LANG: 'C.UTF-8',
    PGHOST: PG_HOST,
    PGPORT: String(PG_PORT),
    PGUSER: PG_USER,
    PGDATABASE: database,
  };
  if (process.env.PGPASSWORD) env.PGPASSWORD = process.env.PGPASSWORD;
  return env;
}

export async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>) {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => {});
  }
}

export async function dropDatabase(name: string): Promise<void> {
  await withClient(serverUrl('postgres'), (client) =>
    client.query(`DROP DATABASE IF EXISTS "${name.replaceAll('"', '""')}" WITH (FORCE)`),
  );
}

export async function listDatabases(like: string): Promise<string[]> {
  return withClient(serverUrl('postgres'), async (client) => {
    const { rows } = await client.query<{ datname: string }>(
      'SELECT datname FROM pg_database WHERE datname LIKE $1 ORDER BY 1',
      [like],
    );
    return rows.map((row) => row.datname);
  });
}

/**
 * Before each timed run: PostgreSQL's dirty buffers written (CHECKPOINT) and the kernel's dirty
 * pages with them (`sync`), so that no run pays for the write-back of the one before it (the
 * raw methods' unsynced files, a load's pages, the hint bits a scan set). Not timed.
 */
export async function settleWrites(): Promise<void> {
  await withClient(serverUrl('postgres'), (client) => client.query('CHECKPOINT'));
  await new Promise<void>((resolve, reject) =>
    execFile('sync', [], (error) => (error ? reject(error) : resolve())),
  );
}
