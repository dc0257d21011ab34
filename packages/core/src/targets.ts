import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import picomatch from 'picomatch';
import { type Config, ConfigError } from './config.js';
import type { Retention } from './job-catalog.js';
import type { BackupFormat, Compression } from './manifest.js';
import type { PitrSettings } from './pitr-settings.js';
import {
  lockServerFor,
  parsePostgresUrl,
  serverSettings,
  urlWithDatabase,
} from './server-settings.js';
import { targetDefaultsFromConfig } from './target-defaults.js';
import { FileIssues, MAX_TARGETS_FILE_BYTES } from './targets-document.js';
import { parseTargetsFile, resolvePitr } from './targets-file.js';

/**
 * Targets: named database connections, each with its own schedules, retention, destinations
 * and switches. Either a targets file (TARGETS_FILE, YAML or JSON) declares servers and
 * targets, or DATABASE_URL alone is the server `default` with the target `default`, every
 * setting from the environment.
 *
 * With TARGETS_FILE set, the file alone says what is backed up: DATABASE_URL, if also set, adds
 * no server or target `default` (name one in the file to have it) and only says where the
 * advisory locks live, unless LOCK_DATABASE_URL does.
 */

export interface ServerSettings {
  name: string;
  /** postgres URL without a password; its path is the maintenance database. */
  url: string;
  /**
   * Not enumerable (see serverSettings): JSON, logs and object spread leave it out. Copy it by
   * name when building a connection.
   */
  password: string | undefined;
  maintenanceDatabase: string;
  maxConcurrentJobs: number;
  /** Point-in-time recovery (WAL archive and base backups), or null when off. */
  pitr: PitrSettings | null;
}

/** `off` → enabled false, with the environment's pattern (or the fallback) kept to turn on. */
export interface ScheduleSpec {
  pattern: string;
  enabled: boolean;
}

export interface TargetSettings {
  name: string;
  server: string;
  /** A database name, or null for a discovery target ("*"). */
  database: string | null;
  /** Discovery only: glob patterns over database names (empty include = all). */
  include: string[];
  exclude: string[];
  schedules: { backup: ScheduleSpec; cleanup: ScheduleSpec; verify: ScheduleSpec };
  timeZone: string;
  retention: Retention;
  destinations: string[];
  encryption: boolean;
  restoreEnabled: boolean;
  format: BackupFormat;
  /** pg_dump --jobs of a directory-format backup; null: the worker's default. */
  dumpJobs: number | null;
  compression: Compression;
  verifyRestore: boolean;
  tables: { include: string[] | null; exclude: string[] };
}

export interface TargetsConfig {
  servers: ServerSettings[];
  targets: TargetSettings[];
  /** Where the advisory locks live: LOCK_DATABASE_URL, else DATABASE_URL's server, else the first server in the file. */
  lockServer: ServerSettings;
  /** 'file' or 'env' (DATABASE_URL alone). */
  source: 'file' | 'env';
}

export { serverSettings } from './server-settings.js';
export { type ParseTargetsOptions, parseTargetsFile, targetNameSchema } from './targets-file.js';

/** DATABASE_URL alone: server `default` and target `default`, as one database always was. */
function targetsFromEnv(config: Config, databaseUrl: string): TargetsConfig {
  const parts = parsePostgresUrl(databaseUrl);
  if (typeof parts === 'string') throw new ConfigError([`DATABASE_URL: ${parts}`]);
  const issues = new FileIssues();
  const pitr = config.PITR_ENABLED ? resolvePitr('default', {}, config, issues) : null;
  if (issues.list.length > 0) throw new ConfigError(issues.list);
  const server = serverSettings({
    name: 'default',
    url: urlWithDatabase(parts.url, config.MAINTENANCE_DATABASE),
    password: parts.password,
    maintenanceDatabase: config.MAINTENANCE_DATABASE,
    maxConcurrentJobs: 1,
    pitr,
  });
  const target: TargetSettings = {
    name: 'default',
    server: server.name,
    database: parts.database ?? 'postgres',
    ...targetDefaultsFromConfig(config),
  };
  const lockServer = lockServerFor(config, 'env', server);
  if (typeof lockServer === 'string') throw new ConfigError([lockServer]);
  return { servers: [server], targets: [target], lockServer, source: 'env' };
}

/**
 * Reads TARGETS_FILE (synchronously: at start and on reload) or, without it, builds server
 * `default` and target `default` from DATABASE_URL and the environment's settings.
 */
export function loadTargets(
  config: Config,
  env: Record<string, string | undefined>,
): TargetsConfig {
  if (!config.TARGETS_FILE) {
    if (!config.DATABASE_URL) {
      throw new ConfigError([
        'DATABASE_URL: set DATABASE_URL (one database) or TARGETS_FILE (many)',
      ]);
    }
    return targetsFromEnv(config, config.DATABASE_URL);
  }
  const path = resolve(config.TARGETS_FILE);
  let text: string;
  try {
    const stat = statSync(path);
    if (!stat.isFile()) throw new ConfigError([`targets file: ${path} is not a file`]);
    // Checked before reading, so a wrong path to a huge file is not read into memory.
    if (stat.size > MAX_TARGETS_FILE_BYTES) {
      throw new ConfigError(['targets file: is larger than 1 MiB']);
    }
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new ConfigError([`targets file: cannot read ${path} (${code})`]);
  }
  return parseTargetsFile(text, path, config, env);
}

/** `<server>/<database>`: the name of a database found by a discovery target. */
export function discoveredTargetName(server: string, database: string): string {
  return `${server}/${database}`;
}

/**
 * Databases pgkeep itself creates: scratch databases of restores and verifies,
 * `pgkeep_<restore|verify>_<8 hex namespace tag>_<random>` (scratchDatabasePrefix in
 * @pgkeep/pg, of any deployment), and databases a restore replaced, `<db>_pre_restore_<…>`.
 */
const scratchDatabase = /^pgkeep_(?:restore|verify)_[0-9a-f]{8}_/;
const replacedDatabase = /_pre_restore_/;

type Matcher = (name: string) => boolean;
const matchers = new WeakMap<string[], Matcher>();

function matcher(patterns: string[]): Matcher {
  let match = matchers.get(patterns);
  if (!match) {
    match = picomatch(patterns);
    matchers.set(patterns, match);
  }
  return match;
}

/**
 * Whether a database found on a discovery target's server is backed up as a target of its
 * own. Never: templates (the listing should also leave out `datistemplate` and databases that
 * refuse connections), pgkeep's scratch databases, databases replaced by restores. The
 * maintenance database (`postgres`) is picked like any other: people keep data in it, and a
 * database silently left out is a backup missing when it is needed; `exclude: [postgres]`
 * leaves it out. Then: it matches an include pattern (when there are any) and no exclude one.
 * Names are matched case-sensitively, as PostgreSQL names are.
 */
export function discoveryPicks(target: TargetSettings, database: string): boolean {
  if (database === 'template0' || database === 'template1') return false;
  if (scratchDatabase.test(database) || replacedDatabase.test(database)) return false;
  if (target.include.length > 0 && !matcher(target.include)(database)) return false;
  return !(target.exclude.length > 0 && matcher(target.exclude)(database));
}
