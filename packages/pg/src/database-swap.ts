import { AppError } from '@pgkeep/core';
import { type ClientBase, escapeIdentifier, escapeLiteral } from 'pg';
import { databaseExists } from './database-admin.js';
import { plainDatabaseName, replacedMarker } from './database-names.js';

// Utility statements take no parameters: how their names are quoted, see database-names.ts.

/** Settings whose stored value is a list (as pg_dump knows them): each element is quoted. */
const listSettings = new Set([
  'local_preload_libraries',
  'search_path',
  'session_preload_libraries',
  'shared_preload_libraries',
  'temp_tablespaces',
  'unix_socket_directories',
]);

/** Splits `"$user", public` into `$user` and `public`, honouring double quotes. */
export function splitSettingList(value: string): string[] {
  const items: string[] = [];
  let current = '';
  let quoted = false;
  for (let i = 0; i < value.length; i += 1) {
    const char = value[i];
    if (char === '"') {
      if (quoted && value[i + 1] === '"') {
        current += '"';
        i += 1;
      } else {
        quoted = !quoted;
      }
    } else if (char === ',' && !quoted) {
      items.push(current.trim());
      current = '';
    } else {
      current += char;
    }
  }
  items.push(current.trim());
  return items.filter((item) => item !== '');
}

/** The SQL for a stored setting value: a literal, or a list of literals for list settings. */
export function settingValueSql(key: string, value: string): string {
  if (!listSettings.has(key.toLowerCase())) return escapeLiteral(value);
  const items = splitSettingList(value);
  return items.length > 0 ? items.map((item) => escapeLiteral(item)).join(', ') : "''";
}

const databasePrivileges = new Set(['CREATE', 'CONNECT', 'TEMPORARY']);

/**
 * Statements that give `target` the database-level state of `source` that a dump does not
 * carry: `ALTER DATABASE … SET` settings (also per role), connection limit, and privileges.
 */
async function settingsStatements(client: ClientBase, source: string, target: string) {
  const statements: string[] = [];
  const t = plainDatabaseName(target);
  const { rows: settings } = await client.query<{ role: string | null; setting: string }>(
    `SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END AS role,
            unnest(s.setconfig) AS setting
     FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
     WHERE d.datname = $1`,
    [source],
  );
  for (const { role, setting } of settings) {
    const eq = setting.indexOf('=');
    const key = setting.slice(0, eq);
    const value = setting.slice(eq + 1);
    const set = `SET ${escapeIdentifier(key)} TO ${settingValueSql(key, value)}`;
    statements.push(
      role
        ? `ALTER ROLE ${escapeIdentifier(role)} IN DATABASE ${t} ${set}`
        : `ALTER DATABASE ${t} ${set}`,
    );
  }
  const { rows: meta } = await client.query<{
    connlimit: number;
    acl: string[] | null;
    comment: string | null;
  }>(
    `SELECT datconnlimit AS connlimit, datacl::text[] AS acl,
            shobj_description(oid, 'pg_database') AS comment
     FROM pg_database WHERE datname = $1`,
    [source],
  );
  const row = meta[0];
  if (row?.comment) statements.push(`COMMENT ON DATABASE ${t} IS ${escapeLiteral(row.comment)}`);
  if (row && row.connlimit !== -1)
    statements.push(`ALTER DATABASE ${t} CONNECTION LIMIT ${Number(row.connlimit)}`);
  if (row?.acl) {
    statements.push(`REVOKE ALL ON DATABASE ${t} FROM PUBLIC`);
    const { rows: grants } = await client.query<{ grantee: string; privilege: string }>(
      `SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END AS grantee,
              a.privilege_type AS privilege
       FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = $1`,
      [source],
    );
    for (const { grantee, privilege } of grants) {
      // A keyword, not a name: only the privileges a database has are written.
      if (!databasePrivileges.has(privilege)) continue;
      const who = grantee === 'PUBLIC' ? 'PUBLIC' : escapeIdentifier(grantee);
      statements.push(`GRANT ${privilege} ON DATABASE ${t} TO ${who}`);
    }
  }
  return statements;
}

export interface SwapResult {
  previousDatabase: string | null;
  /** From the first session terminated to the commit: how long the target was unavailable. */
  downtimeMs: number;
  terminatedSessions: number;
  attempts: number;
}

/**
 * From the maintenance database: end the target's sessions, then in one transaction rename
 * target → `previous` and `temporary` → target, carrying the database-level settings over.
 * The renames lock the databases, so a client that connects meanwhile waits and then lands in
 * the restored database. If a session slipped in between, the transaction fails as a whole
 * and is tried again; if the worker dies, the server rolls it back and nothing changed.
 */
export async function swapDatabases(
  client: ClientBase,
  options: {
    target: string;
    temporary: string;
    previous: string;
    /** Marks the replaced database as this deployment's, for its clean-up to find. */
    namespace: string;
    maxAttempts?: number;
  },
): Promise<SwapResult> {
  const { target, temporary, previous } = options;
  const [targetSql, temporarySql, previousSql] = [target, temporary, previous].map(
    plainDatabaseName,
  );
  const exists = await databaseExists(client, target);
  const started = Date.now();
  let terminatedSessions = 0;
  const maxAttempts = options.maxAttempts ?? 20;
  for (let attempt = 1; ; attempt += 1) {
    if (exists) {
      const { rows } = await client.query<{ n: string }>(
        `SELECT count(pg_terminate_backend(pid))::text AS n FROM pg_stat_activity
         WHERE datname = $1 AND pid <> pg_backend_pid()`,
        [target],
      );
      terminatedSessions += Number(rows[0]?.n ?? 0);
    }
    try {
      await client.query('BEGIN');
      await client.query("SET LOCAL lock_timeout = '5s'");
      // This commit must wait for the WAL flush whatever the server's or the role's default:
      // it is what makes a load done with synchronous_commit=off durable (the flush covers
      // every earlier commit; see temporaryDatabaseLoadSettings). Every value but `off` waits
      // for the local flush, so a stronger one (remote_apply…) is left as it is.
      await client.query(
        "SELECT set_config('synchronous_commit', 'on', true) WHERE current_setting('synchronous_commit') = 'off'",
      );
      if (exists) {
        const statements = await settingsStatements(client, target, temporary);
        await client.query(`ALTER DATABASE ${targetSql} RENAME TO ${previousSql}`);
        // The previous database stays for rollback, closed to connections so nothing writes
        // to it by mistake, and marked as replaced by this deployment (its own comment moves
        // to the restored database below).
        await client.query(`ALTER DATABASE ${previousSql} ALLOW_CONNECTIONS false`);
        await client.query(
          `COMMENT ON DATABASE ${previousSql} IS ${escapeLiteral(replacedMarker(options.namespace, new Date()))}`,
        );
        for (const statement of statements) await client.query(statement);
      }
      await client.query(`ALTER DATABASE ${temporarySql} RENAME TO ${targetSql}`);
      await client.query('COMMIT');
      return {
        previousDatabase: exists ? previous : null,
        downtimeMs: Date.now() - started,
        terminatedSessions,
        attempts: attempt,
      };
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      const code = (error as { code?: string }).code;
      // 55006: someone connected between the terminate and the rename; try again.
      if (code === '55006' && attempt < maxAttempts) continue;
      throw new AppError('SWAP_FAILED', `could not swap ${target}: ${(error as Error).message}`, {
        cause: error,
        retryable: code === '55006' || code === '55P03',
      });
    }
  }
}
