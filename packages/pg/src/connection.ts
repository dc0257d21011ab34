/**
 * Connection settings for libpq tools come through the child's environment (PGHOST, PGUSER,
 * PGPASSWORD, …), never argv, where any user on the host could read them in `ps`.
 */
export interface PgTarget {
  host: string;
  port: number;
  user: string;
  password: string | undefined;
  database: string;
  sslmode: string | undefined;
}

export function parseDatabaseUrl(databaseUrl: string): PgTarget {
  const url = new URL(databaseUrl);
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
  return {
    // WHATWG URLs keep IPv6 hosts in brackets; libpq and node-postgres want them bare.
    host: decodeURIComponent(url.hostname).replace(/^\[(.*)\]$/, '$1') || 'localhost',
    port: url.port ? Number(url.port) : 5432,
    user: decodeURIComponent(url.username) || 'postgres',
    password: url.password ? decodeURIComponent(url.password) : undefined,
    database: database || 'postgres',
    sslmode: url.searchParams.get('sslmode') ?? undefined,
  };
}

export function withDatabase(target: PgTarget, database: string): PgTarget {
  return { ...target, database };
}

/**
 * The server checks every 2 s that the client of a running query is still there, so a session
 * whose worker (and pg_dump) died is ended even while it waits on a lock, instead of living on
 * until the lock comes free.
 */
const SESSION_OPTIONS = '-c client_connection_check_interval=2000';

/** Settings for every session of one tool run, on top of pgkeep's own: name → value. */
export type SessionSettings = Readonly<Record<string, string>>;

const settingName = /^[a-z_][a-z0-9_.]*$/i;

/**
 * PGOPTIONS: pgkeep's own settings, then `settings` as `-c name=value`. libpq splits the string
 * at spaces unless a backslash escapes them, so backslashes and spaces in a value are escaped.
 */
export function sessionOptions(settings: SessionSettings = {}): string {
  const options = [SESSION_OPTIONS];
  for (const [name, value] of Object.entries(settings)) {
    if (!settingName.test(name)) throw new Error(`not a setting name: ${JSON.stringify(name)}`);
    options.push(`-c ${name}=${value.replace(/[\\ ]/g, '\\$&')}`);
  }
  return options.join(' ');
}

/**
 * Environment for pg_dump/psql/pg_restore: only what they need, nothing of the parent's.
 * `settings` apply to every session the tool opens (pg_restore -j opens one per job).
 */
export function libpqEnv(
  target: PgTarget,
  base: NodeJS.ProcessEnv = {},
  settings: SessionSettings = {},
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: base.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    LANG: 'C.UTF-8',
    PGHOST: target.host,
    PGPORT: String(target.port),
    PGUSER: target.user,
    PGDATABASE: target.database,
    PGAPPNAME: 'pgkeep',
    PGCONNECT_TIMEOUT: '10',
    PGOPTIONS: sessionOptions(settings),
  };
  if (target.password !== undefined) env.PGPASSWORD = target.password;
  if (target.sslmode !== undefined) env.PGSSLMODE = target.sslmode;
  return env;
}

/**
 * libpq's sslmode in node-postgres terms. `allow`/`prefer` cannot fall back in node-postgres;
 * they connect without TLS here (libpq tools still get PGSSLMODE as given).
 */
function nodeSsl(sslmode: string | undefined) {
  switch (sslmode) {
    case 'require':
      return { rejectUnauthorized: false };
    case 'verify-ca':
      // The chain is checked, the host name is not: what libpq's verify-ca means.
      return { rejectUnauthorized: true, checkServerIdentity: () => undefined };
    case 'verify-full':
      return { rejectUnauthorized: true };
    default:
      return undefined;
  }
}

/**
 * Options for node-postgres built from the same target; `settings` are sent at connection time
 * (no round trip of their own) and apply to the whole session.
 */
export function clientConfig(
  target: PgTarget,
  applicationName = 'pgkeep',
  settings: SessionSettings = {},
) {
  return {
    host: target.host,
    port: target.port,
    user: target.user,
    password: target.password,
    database: target.database,
    application_name: applicationName,
    options: sessionOptions(settings),
    connectionTimeoutMillis: 10_000,
    keepAlive: true,
    ssl: nodeSsl(target.sslmode),
  };
}
