import { randomBytes } from 'node:crypto';
import { type ClientBase, escapeIdentifier, escapeLiteral } from 'pg';
import {
  namespaceTag,
  plainDatabaseName,
  replacedMarker,
  replacedMarkerPattern,
} from './database-names.js';

// Utility statements take no parameters: how their names are quoted, see database-names.ts.

/**
 * Scratch databases: `pgkeep_<restore|verify>_<namespace tag>_<random>`. The tag keeps one
 * deployment's start-up clean-up away from another's databases on a shared server.
 */
export type ScratchKind = 'restore' | 'verify';

export function scratchDatabasePrefix(kind: ScratchKind, namespace: string): string {
  return `pgkeep_${kind}_${namespaceTag(namespace)}_`;
}

export function scratchDatabaseName(kind: ScratchKind, namespace: string): string {
  return `${scratchDatabasePrefix(kind, namespace)}${randomBytes(6).toString('hex')}`;
}

export async function databaseExists(client: ClientBase, name: string): Promise<boolean> {
  const { rows } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
  return rows.length > 0;
}

/**
 * A fresh database for a restore, from template0 with the encoding, collation and owner of the
 * database it will replace (when there is one), so the swap changes nothing but the data.
 */
export async function createRestoreDatabase(
  client: ClientBase,
  name: string,
  like: string | null,
): Promise<void> {
  let options = 'TEMPLATE template0';
  if (like) {
    const { rows } = await client.query<{
      encoding: string;
      collate: string;
      ctype: string;
      owner: string;
    }>(
      `SELECT pg_encoding_to_char(d.encoding) AS encoding, d.datcollate AS collate,
              d.datctype AS ctype, pg_get_userbyid(d.datdba) AS owner
       FROM pg_database d WHERE d.datname = $1`,
      [like],
    );
    const source = rows[0];
    if (source) {
      options += ` ENCODING ${escapeLiteral(source.encoding)} LC_COLLATE ${escapeLiteral(source.collate)}`;
      options += ` LC_CTYPE ${escapeLiteral(source.ctype)} OWNER ${escapeIdentifier(source.owner)}`;
    }
  }
  await client.query(`CREATE DATABASE ${plainDatabaseName(name)} ${options}`);
}

/**
 * Drops a database pgkeep made (a scratch or replaced one), whose name it generated or found in
 * pg_database: quoted as it is, whatever it holds, never refused, so a clean-up always works.
 */
export async function dropDatabaseForce(client: ClientBase, name: string): Promise<void> {
  await client.query(`DROP DATABASE IF EXISTS ${escapeIdentifier(name)} WITH (FORCE)`);
}

/** Scratch databases of this namespace (the caller makes sure none is in use). */
export async function listScratchDatabases(
  client: ClientBase,
  kind: ScratchKind,
  namespace: string,
): Promise<string[]> {
  const prefix = scratchDatabasePrefix(kind, namespace);
  const { rows } = await client.query<{ datname: string }>(
    'SELECT datname FROM pg_database WHERE left(datname, length($1)) = $1 ORDER BY 1',
    [prefix],
  );
  return rows.map((row) => row.datname);
}

export interface PreRestoreDatabase {
  name: string;
  replacedAt: Date;
}

/**
 * Databases this deployment's restores replaced and kept for rollback: still closed to
 * connections, as the swap left them, and carrying its marker. One an admin reopened is not
 * listed.
 */
export async function listPreRestoreDatabases(
  client: ClientBase,
  namespace: string,
): Promise<PreRestoreDatabase[]> {
  const { rows } = await client.query<{ datname: string; comment: string | null }>(
    `SELECT datname, shobj_description(oid, 'pg_database') AS comment
     FROM pg_database WHERE NOT datallowconn ORDER BY 1`,
  );
  const tag = namespaceTag(namespace);
  const found: PreRestoreDatabase[] = [];
  for (const { datname, comment } of rows) {
    const match = replacedMarkerPattern.exec(comment ?? '');
    if (!match || match[1] !== tag) continue;
    const replacedAt = new Date(match[2] ?? '');
    if (!Number.isNaN(replacedAt.getTime())) found.push({ name: datname, replacedAt });
  }
  return found;
}

/** For tests and tools: the marker a swap gives a replaced database. */
export function preRestoreComment(namespace: string, at: Date): string {
  return replacedMarker(namespace, at);
}
