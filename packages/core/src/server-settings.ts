import type { Config } from './config.js';
import type { PitrSettings } from './pitr-settings.js';
import type { ServerSettings } from './targets.js';

/**
 * A server's settings with its password out of its URL, and out of its string forms: the
 * password is an own, non-enumerable property, so JSON.stringify, util.inspect, pino and
 * object spread leave it out. Read it as `server.password`; copy it by name, never by spread.
 */
export function serverSettings(fields: {
  name: string;
  url: string;
  password: string | undefined;
  maintenanceDatabase: string;
  maxConcurrentJobs: number;
  pitr?: PitrSettings | null;
}): ServerSettings {
  const { password, ...visible } = fields;
  const server = { ...visible, pitr: fields.pitr ?? null } as ServerSettings;
  Object.defineProperty(server, 'password', { value: password, enumerable: false, writable: true });
  return server;
}

export interface PostgresUrlParts {
  /** Without a password and without a path. */
  url: URL;
  password: string | undefined;
  /** The path's database, or undefined for none. */
  database: string | undefined;
}

export const postgresUrlRule = 'must be a postgres:// or postgresql:// URL';

/** A postgres URL taken apart, or the rule it breaks (never a piece of the value). */
export function parsePostgresUrl(value: string): PostgresUrlParts | string {
  let url: URL;
  let password: string | undefined;
  let database: string | undefined;
  try {
    url = new URL(value);
    if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') return postgresUrlRule;
    password = url.password === '' ? undefined : decodeURIComponent(url.password);
    const path = decodeURIComponent(url.pathname.replace(/^\//, ''));
    database = path === '' ? undefined : path;
  } catch {
    return postgresUrlRule;
  }
  // libpq reads ?password= too; a password there would live on in the URL pgkeep keeps.
  if (url.searchParams.has('password')) {
    return 'must not carry a password in its query (give it as password or passwordFile)';
  }
  url.password = '';
  url.pathname = '';
  return { url, password, database };
}

/** The URL with a database as its path. */
export function urlWithDatabase(url: URL, database: string): string {
  const copy = new URL(url.href);
  copy.pathname = `/${encodeURIComponent(database)}`;
  return copy.href;
}

/**
 * Where the advisory locks live: LOCK_DATABASE_URL (its path is the database, else
 * MAINTENANCE_DATABASE); else DATABASE_URL's server and MAINTENANCE_DATABASE (in env mode that
 * is the server `default` itself); else a targets file's first server. A lock server that is
 * not one of the listed servers is named `locks`. A bad URL gives the rule it breaks, keyed.
 */
export function lockServerFor(
  config: Config,
  source: 'file' | 'env',
  first: ServerSettings | undefined,
): ServerSettings | string {
  const locks = (key: string, value: string, useUrlPath: boolean): ServerSettings | string => {
    const parts = parsePostgresUrl(value);
    if (typeof parts === 'string') return `${key}: ${parts}`;
    const database = (useUrlPath ? parts.database : undefined) ?? config.MAINTENANCE_DATABASE;
    return serverSettings({
      name: 'locks',
      url: urlWithDatabase(parts.url, database),
      password: parts.password,
      maintenanceDatabase: database,
      maxConcurrentJobs: 1,
    });
  };
  if (config.LOCK_DATABASE_URL) return locks('LOCK_DATABASE_URL', config.LOCK_DATABASE_URL, true);
  if (source === 'env' && first) return first;
  // DATABASE_URL's path is the database it backs up; the locks go to the maintenance database.
  if (config.DATABASE_URL) return locks('DATABASE_URL', config.DATABASE_URL, false);
  return first ?? 'targets file: servers: must name at least one server';
}
