import { readdir } from 'node:fs/promises';
import path from 'node:path';
import {
  type BackupManifest,
  discoverySchedulerId,
  jobCatalog,
  type ScheduleName,
  scheduleJobs,
  scheduleNames,
  schedulerId,
  targetRefSchema,
} from '@pgkeep/core';
import type { ResolvedTarget } from '@pgkeep/engine';
import { readTargetStatus } from '@pgkeep/queue';
import type { ApiServices } from './api-services.js';
import { forTarget } from './target-scope.js';

export interface TargetView {
  name: string;
  server: string | null;
  database: string | null;
  /** `configured`, `discovered` (by the discovery target `discoveredBy`), or `catalog` (removed from the file; its backups stay). */
  kind: 'configured' | 'discovered' | 'catalog';
  discoveredBy: string | null;
  schedules: {
    name: ScheduleName;
    enabled: boolean;
    pattern: string;
    timeZone: string;
    nextRunAt: string | null;
  }[];
  retention: unknown;
  destinations: string[];
  encryption: boolean;
  restoreEnabled: boolean;
  lastBackup: { id: string; createdAt: string; size: number; ageHours: number } | null;
  lastFailure: { job: string; code: string; message: string; at: string } | null;
  health: 'ok' | 'warning' | 'error';
  reasons: string[];
}

async function nextRuns(
  services: ApiServices,
  target: ResolvedTarget,
): Promise<TargetView['schedules']> {
  const settings = target.configured;
  const discovery = settings.database === null;
  const views: TargetView['schedules'] = [];
  for (const name of scheduleNames) {
    const schedule = settings.schedules[name];
    const id = discovery
      ? discoverySchedulerId(name, settings.name)
      : schedulerId(name, settings.name);
    const queue = services.queues[jobCatalog[discovery ? 'discover' : scheduleJobs[name]].queue];
    const scheduler = schedule.enabled
      ? await queue.getJobScheduler(id).catch(() => undefined)
      : undefined;
    views.push({
      name,
      enabled: schedule.enabled,
      pattern: scheduler?.pattern ?? schedule.pattern,
      timeZone: scheduler?.tz ?? settings.timeZone,
      nextRunAt: scheduler?.next ? new Date(scheduler.next).toISOString() : null,
    });
  }
  return views;
}

function judge(
  services: ApiServices,
  newest: BackupManifest | undefined,
  lastFailure: TargetView['lastFailure'],
  backupScheduled: boolean,
): Pick<TargetView, 'health' | 'reasons' | 'lastBackup'> {
  const reasons: string[] = [];
  let health: TargetView['health'] = 'ok';
  const lastBackup = newest
    ? {
        id: newest.id,
        createdAt: newest.createdAt,
        size: newest.size,
        ageHours: Math.round(((Date.now() - Date.parse(newest.createdAt)) / 3_600_000) * 100) / 100,
      }
    : null;
  if (!lastBackup) {
    if (backupScheduled) {
      health = 'warning';
      reasons.push('NO_BACKUP');
    }
  } else if (lastBackup.ageHours > services.config.HEALTH_MAX_BACKUP_AGE_HOURS) {
    health = 'warning';
    reasons.push('BACKUP_TOO_OLD');
  }
  // A failure after the newest backup is still unanswered.
  if (lastFailure && (!newest || Date.parse(lastFailure.at) > Date.parse(newest.completedAt))) {
    health = 'error';
    reasons.push('LAST_JOB_FAILED');
  }
  return { health, reasons, lastBackup };
}

async function viewOf(services: ApiServices, target: ResolvedTarget): Promise<TargetView> {
  const scoped = await forTarget(services, target.info.name);
  const { manifests } = await scoped.storage.listManifests();
  const status = await readTargetStatus(
    services.redis,
    services.config.REDIS_PREFIX,
    target.info.name,
  ).catch(() => undefined);
  const lastFailure = status?.failure ?? null;
  const settings = target.info.settings;
  const discovered = target.configured.name !== target.info.name;
  return {
    name: target.info.name,
    server: target.info.server,
    database: settings.database,
    kind: discovered ? 'discovered' : 'configured',
    discoveredBy: discovered ? target.configured.name : null,
    schedules: await nextRuns(services, target),
    retention: settings.retention,
    destinations: settings.destinations,
    encryption: settings.encryption,
    restoreEnabled: settings.restoreEnabled,
    lastFailure,
    ...judge(services, manifests[0], lastFailure, settings.schedules.backup.enabled),
  };
}

/** Targets whose backups the local catalog holds but the targets file no longer names. */
async function catalogOnlyTargets(services: ApiServices, known: Set<string>): Promise<string[]> {
  const root = path.join(services.config.BACKUP_DIR, 'targets');
  const names: string[] = [];
  const entries = await readdir(root, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    if (!entry.isDirectory()) continue;
    const inner = await readdir(path.join(root, entry.name), { withFileTypes: true }).catch(
      () => [],
    );
    // `targets/<name>/` holds a configured target's backups, `targets/<server>/<db>/` a discovered one's.
    if (inner.some((file) => file.isFile() && file.name.endsWith('.manifest.json')))
      names.push(entry.name);
    for (const sub of inner) {
      if (sub.isDirectory()) names.push(`${entry.name}/${sub.name}`);
    }
  }
  return names.filter((name) => targetRefSchema.safeParse(name).success && !known.has(name));
}

export async function listTargets(services: ApiServices): Promise<TargetView[]> {
  const { targets } = await services.registry.expand();
  const views: TargetView[] = [];
  for (const target of targets) views.push(await viewOf(services, target));
  const known = new Set(views.map((view) => view.name));
  for (const name of await catalogOnlyTargets(services, known)) {
    views.push({
      name,
      server: null,
      database: null,
      kind: 'catalog',
      discoveredBy: null,
      schedules: [],
      retention: null,
      destinations: [],
      encryption: false,
      restoreEnabled: false,
      lastBackup: null,
      lastFailure: null,
      health: 'ok',
      reasons: [],
    });
  }
  return views;
}

export async function getTarget(services: ApiServices, name: string): Promise<TargetView> {
  return viewOf(services, services.registry.require(name));
}
