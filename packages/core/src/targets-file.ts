import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { type Config, ConfigError } from './config.js';
import { interpolateEnv } from './env-interpolation.js';
import { type Retention, scheduleNames } from './job-catalog.js';
import { type PitrSettings, pitrDefaults, slotNameFor } from './pitr-settings.js';
import {
  lockServerFor,
  parsePostgresUrl,
  serverSettings,
  urlWithDatabase,
} from './server-settings.js';
import {
  encryptionConfigured,
  scheduleSpecOf,
  targetDefaultsFromConfig,
} from './target-defaults.js';
import type { ServerSettings, TargetSettings, TargetsConfig } from './targets.js';
import { FileIssues, type FilePath, readTargetsDocument } from './targets-document.js';
import {
  type PitrEntry,
  parseEntry,
  type RetentionEntry,
  type ServerEntry,
  serverEntrySchema,
  type TargetEntry,
  targetEntrySchema,
} from './targets-file-schema.js';

export const MAX_SERVERS = 64;
export const MAX_TARGETS = 1000;
/** Server and target names: they become parts of lock keys, storage prefixes and metric labels. */
export const targetNameSchema = z
  .string()
  .regex(/^[a-z0-9_-]{1,63}$/, 'must be 1-63 lowercase letters, digits, "_" or "-"');

export interface ParseTargetsOptions {
  /** How a `passwordFile` is read; the default reads the file (relative to the targets file). */
  readSecretFile?: (path: string) => string;
}

function errorCode(error: unknown): string {
  return (error as NodeJS.ErrnoException | undefined)?.code ?? 'unreadable';
}

function serverPassword(
  entry: ServerEntry,
  inUrl: string | undefined,
  path: FilePath,
  read: (path: string) => string,
  issues: FileIssues,
): string | undefined {
  const given = [inUrl, entry.password, entry.passwordFile].filter((value) => value !== undefined);
  if (given.length > 1) {
    issues.add(path, 'give the password once: in url, password or passwordFile');
    return undefined;
  }
  if (entry.passwordFile === undefined) return inUrl ?? entry.password;
  let content: string;
  try {
    content = read(entry.passwordFile);
  } catch (error) {
    issues.add(
      [...path, 'passwordFile'],
      `cannot read ${entry.passwordFile} (${errorCode(error)})`,
    );
    return undefined;
  }
  // Secret files are usually written by `echo` or an editor: one trailing newline is not part
  // of the password.
  const password = content.replace(/\r?\n$/, '');
  if (password === '') issues.add([...path, 'passwordFile'], 'the file is empty');
  return password;
}

/** keepLast or gfs, one of the two; the fallback when the entry gives neither key at all. */
function resolveRetention(
  entry: RetentionEntry | undefined,
  fallback: Retention,
  issue: (key: FilePath, message: string) => void,
): Retention {
  if (!entry) return fallback;
  const { keepLast, gfs } = entry;
  if ((keepLast === undefined) === (gfs === undefined)) {
    issue(['retention'], 'give keepLast or gfs (one of the two)');
    return fallback;
  }
  if (keepLast !== undefined) return { kind: 'keep-last', keepLast };
  if (gfs && gfs.days + gfs.weeks + gfs.months + gfs.years === 0) {
    issue(['retention', 'gfs'], 'a GFS policy must keep something');
  }
  return gfs ? { kind: 'gfs', ...gfs } : fallback;
}

/** Destinations named in the file must be configured (`local` always is). */
function checkDestinations(
  names: string[] | undefined,
  config: Config,
  issue: (key: FilePath, message: string) => void,
): void {
  const configured = new Set(['local', ...config.BACKUP_DESTINATIONS]);
  (names ?? []).forEach((destination, index) => {
    if (!configured.has(destination)) {
      issue(
        ['destinations', index],
        `"${destination}" is not a configured destination (list it in BACKUP_DESTINATIONS, ` +
          `with its S3_${destination.toUpperCase()}_* keys)`,
      );
    }
  });
}

/** A server's `pitr` entry resolved (null: off); problems are added to `issues`. */
export function resolvePitr(
  name: string,
  entry: PitrEntry | undefined,
  config: Config,
  issues: FileIssues,
): PitrSettings | null {
  if (entry === undefined || entry.enabled === false) return null;
  const issue = (key: FilePath, message: string) =>
    issues.add(['servers', name, 'pitr', ...key], message);
  const defaults = targetDefaultsFromConfig(config);
  checkDestinations(entry.destinations, config, issue);
  if (entry.encryption === true && !encryptionConfigured(config)) {
    issue(
      ['encryption'],
      'is true but neither BACKUP_ENCRYPTION_KEY nor BACKUP_ENCRYPTION_PASSPHRASE is set',
    );
  }
  const schedule = (value: string | undefined, fallback: string) =>
    scheduleSpecOf(value ?? fallback, fallback);
  return {
    slot: slotNameFor(name),
    destinations: entry.destinations ?? defaults.destinations,
    encryption: entry.encryption ?? defaults.encryption,
    baseBackup: {
      schedule: schedule(entry.baseBackupSchedule, pitrDefaults.baseBackupSchedule),
      checkpoint: entry.checkpoint ?? pitrDefaults.checkpoint,
    },
    retention: resolveRetention(entry.retention, pitrDefaults.retention, issue),
    cleanup: { schedule: schedule(entry.cleanupSchedule, pitrDefaults.cleanupSchedule) },
    timeZone: entry.timeZone ?? defaults.timeZone,
    lagWarningSeconds: entry.lagWarningSeconds ?? pitrDefaults.lagWarningSeconds,
    retainedWarningBytes: entry.retainedWarningBytes ?? pitrDefaults.retainedWarningBytes,
    switchWalSeconds: entry.switchWalSeconds ?? pitrDefaults.switchWalSeconds,
  };
}

function resolveServer(
  name: string,
  entry: ServerEntry,
  config: Config,
  read: (path: string) => string,
  issues: FileIssues,
): ServerSettings | undefined {
  const path = ['servers', name];
  const parts = parsePostgresUrl(entry.url);
  if (typeof parts === 'string') {
    issues.add([...path, 'url'], parts);
    return undefined;
  }
  const before = issues.list.length;
  const password = serverPassword(entry, parts.password, path, read, issues);
  const pitr = resolvePitr(name, entry.pitr, config, issues);
  if (issues.list.length > before) return undefined;
  const maintenanceDatabase = parts.database ?? 'postgres';
  return serverSettings({
    name,
    url: urlWithDatabase(parts.url, maintenanceDatabase),
    password,
    maintenanceDatabase,
    maxConcurrentJobs: entry.maxConcurrentJobs ?? 1,
    pitr,
  });
}

function resolveTarget(
  name: string,
  entry: TargetEntry,
  config: Config,
  servers: ReadonlySet<string>,
  issues: FileIssues,
): TargetSettings {
  const path = ['targets', name];
  const issue = (key: FilePath, message: string) => issues.add([...path, ...key], message);
  const defaults = targetDefaultsFromConfig(config);
  if (!servers.has(entry.server)) {
    issue(['server'], `names no server of servers (${[...servers].join(', ') || 'none'})`);
  }
  const discovery = entry.database === '*';
  for (const key of ['include', 'exclude'] as const) {
    if (entry[key] !== undefined && !discovery) issue([key], 'only with database "*"');
  }
  const schedules = { ...defaults.schedules };
  for (const schedule of scheduleNames) {
    const value = entry.schedules?.[schedule];
    // `off` keeps the environment's pattern (or its fallback), to be turned back on with.
    if (value !== undefined)
      schedules[schedule] = scheduleSpecOf(value, schedules[schedule].pattern);
  }
  const retention = resolveRetention(entry.retention, defaults.retention, issue);
  // `local` (BACKUP_DIR) is always there: the catalog lives in it.
  checkDestinations(entry.destinations, config, issue);
  if (entry.encryption === true && !encryptionConfigured(config)) {
    issue(
      ['encryption'],
      'is true but neither BACKUP_ENCRYPTION_KEY nor BACKUP_ENCRYPTION_PASSPHRASE is set',
    );
  }
  const format = entry.format ?? defaults.format;
  if (entry.jobs !== undefined && format !== 'directory') {
    issue(['jobs'], `goes with format: directory (this target's format is ${format})`);
  }
  const tables = entry.tables ?? {};
  if (tables.include !== undefined && (tables.exclude?.length ?? 0) > 0) {
    issue(['tables'], 'give include or exclude, not both');
  }
  return {
    name,
    server: entry.server,
    database: discovery ? null : entry.database,
    include: entry.include ?? [],
    exclude: entry.exclude ?? [],
    schedules,
    timeZone: entry.timeZone ?? defaults.timeZone,
    retention,
    destinations: entry.destinations ?? defaults.destinations,
    encryption: entry.encryption ?? defaults.encryption,
    restoreEnabled: entry.restore ?? defaults.restoreEnabled,
    format,
    dumpJobs: entry.jobs ?? defaults.dumpJobs,
    compression: entry.compression ?? defaults.compression,
    verifyRestore: entry.verifyRestore ?? defaults.verifyRestore,
    tables: { include: tables.include ?? null, exclude: tables.exclude ?? [] },
  };
}

type Section = 'servers' | 'targets';
const sections: Record<Section, number> = { servers: MAX_SERVERS, targets: MAX_TARGETS };

function isMapping(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** The file's two sections, each a mapping of names to settings; names checked here. */
function readSections(file: Record<string, unknown>, issues: FileIssues) {
  for (const key of Object.keys(file)) {
    if (!Object.hasOwn(sections, key)) issues.add([key], 'is not a known key');
  }
  const found: Record<Section, Record<string, unknown>> = { servers: {}, targets: {} };
  for (const [section, max] of Object.entries(sections) as [Section, number][]) {
    const value = file[section];
    if (value === undefined) {
      issues.add([section], 'is required');
      continue;
    }
    if (!isMapping(value)) {
      issues.add([section], 'must map names to settings');
      continue;
    }
    const names = Object.keys(value);
    if (names.length === 0) issues.add([section], 'must name at least one');
    // Too many: say so and stop, before the work of checking each of them.
    if (names.length > max) {
      throw new ConfigError([...issues.list, `targets file: ${section}: at most ${max}`]);
    }
    for (const name of names) {
      const parsed = targetNameSchema.safeParse(name);
      if (!parsed.success) {
        issues.add([section, name], parsed.error.issues[0]?.message ?? 'bad name');
      }
    }
    found[section] = value;
  }
  return found;
}

/**
 * Pure but for reading `passwordFile`s: the text of a targets file, checked against the loaded
 * Config (destinations, encryption keys) and with `${VAR}` taken from `env`. Every problem is
 * collected, then one ConfigError says them all; no message holds a value of the file.
 */
export function parseTargetsFile(
  text: string,
  fileName: string,
  config: Config,
  env: Record<string, string | undefined>,
  options: ParseTargetsOptions = {},
): TargetsConfig {
  const document = readTargetsDocument(text, fileName);
  if (!document.ok) throw new ConfigError(document.issues);
  if (!isMapping(document.value)) {
    throw new ConfigError(['targets file: must hold servers and targets']);
  }
  const issues = new FileIssues();
  const file = readSections(document.value, issues);
  const read =
    options.readSecretFile ??
    ((path: string) => readFileSync(resolve(dirname(fileName), path), 'utf8'));

  const servers: ServerSettings[] = [];
  for (const [name, raw] of Object.entries(file.servers)) {
    const value = interpolateEnv(raw, ['servers', name], env, issues);
    const entry = parseEntry(serverEntrySchema, value, ['servers', name], issues);
    const server = entry && resolveServer(name, entry, config, read, issues);
    if (server) servers.push(server);
  }
  // A server with a bad setting still counts as declared: its targets are not also reported.
  const declared = new Set(Object.keys(file.servers));
  const targets: TargetSettings[] = [];
  for (const [name, raw] of Object.entries(file.targets)) {
    const value = interpolateEnv(raw, ['targets', name], env, issues);
    const entry = parseEntry(targetEntrySchema, value, ['targets', name], issues);
    if (entry) targets.push(resolveTarget(name, entry, config, declared, issues));
  }
  // The first server in the file's order, as JavaScript keeps it: names that are whole
  // numbers ("1", "42") come before the others.
  const lockServer = lockServerFor(config, 'file', servers[0]);
  // Without a server that resolved, the reason is already among the issues.
  if (typeof lockServer === 'string' && (servers.length > 0 || issues.list.length === 0)) {
    issues.list.push(lockServer);
  }
  if (issues.list.length > 0 || typeof lockServer === 'string') {
    throw new ConfigError(issues.list);
  }
  return { servers, targets, lockServer, source: 'file' };
}
