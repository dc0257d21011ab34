import type { ClientBase } from 'pg';

/**
 * The databases of a server a discovery target may back up: real databases that accept
 * connections (templates and the databases a restore replaced, which no longer accept them,
 * are left out), by name. Which of them a target picks is decided by its patterns.
 */
export async function listDatabases(client: ClientBase): Promise<string[]> {
  const { rows } = await client.query<{ datname: string }>(
    'SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY datname',
  );
  return rows.map((row) => row.datname);
}
