import {
  AppError,
  type BaseBackupManifest,
  jobCatalog,
  type PitrScheduleName,
  type PitrSettings,
  pitrScheduleJobs,
  pitrSchedulerId,
  type ServerSettings,
} from '@pgkeep/core';
import { type PitrOverview, pitrOverview, pointInTimeProblem } from '@pgkeep/engine';
import { enqueue, type PitrStatus, readPitrStatus } from '@pgkeep/queue';
import type { ApiServices, TargetServices } from './api-services.js';
import { type Requester, stamp } from './backup-service.js';
import { whenReady } from './health-service.js';

type PitrServer = ServerSettings & { pitr: PitrSettings };

export interface PitrScheduleView {
  name: PitrScheduleName;
  enabled: boolean;
  pattern: string;
  timeZone: string;
  nextRunAt: string | null;
}

/** A server's recoverable window and status, with its PITR settings and schedules. */
export interface PitrView extends PitrOverview {
  settings: PitrSettings;
  schedules: PitrScheduleView[];
}

/** The target's server, when it has point-in-time recovery; else PITR_NOT_ENABLED. */
export function pitrServerOf(services: TargetServices): PitrServer {
  const server = services.target.server;
  if (!server.pitr) {
    throw new AppError(
      'PITR_NOT_ENABLED',
      `server ${server.name} (of target ${services.target.info.name}) has no point-in-time recovery: add \`pitr\` to servers.${server.name} in the targets file, then reload it`,
    );
  }
  return server as PitrServer;
}

const RECEIVER_UNKNOWN = "Redis is not reachable: the WAL receiver's status is not known";

/**
 * What the worker leading the server's WAL receiver last published (null: no worker leads one
 * now). Unknown with Redis down: QUEUE_UNAVAILABLE rather than a claim that no receiver runs.
 */
async function receiverStatus(services: ApiServices, server: string): Promise<PitrStatus | null> {
  await whenReady(services.redis);
  const unavailable = (cause?: unknown) =>
    new AppError('QUEUE_UNAVAILABLE', RECEIVER_UNKNOWN, { retryable: true, cause });
  if (services.redis.status !== 'ready') throw unavailable();
  try {
    return await readPitrStatus(services.redis, services.config.REDIS_PREFIX, server);
  } catch (error) {
    throw unavailable(error);
  }
}

/** The server's overview from its archive's catalogs and its receiver's status. */
export async function overviewOf(
  services: ApiServices,
  server: ServerSettings,
  now = new Date(),
): Promise<PitrOverview> {
  const [archive, receiver] = await Promise.all([
    services.pitrArchives.open(server),
    receiverStatus(services, server.name),
  ]);
  return pitrOverview(archive, server, receiver, now);
}

async function schedulesOf(services: ApiServices, server: PitrServer): Promise<PitrScheduleView[]> {
  const specs = {
    basebackup: server.pitr.baseBackup.schedule,
    cleanup: server.pitr.cleanup.schedule,
  } as const;
  const views: PitrScheduleView[] = [];
  for (const name of Object.keys(specs) as PitrScheduleName[]) {
    const spec = specs[name];
    const queue = services.queues[jobCatalog[pitrScheduleJobs[name]].queue];
    const scheduler = spec.enabled
      ? await queue.getJobScheduler(pitrSchedulerId(name, server.name)).catch(() => undefined)
      : undefined;
    views.push({
      name,
      enabled: spec.enabled,
      pattern: scheduler?.pattern ?? spec.pattern,
      timeZone: scheduler?.tz ?? server.pitr.timeZone,
      nextRunAt: scheduler?.next ? new Date(scheduler.next).toISOString() : null,
    });
  }
  return views;
}

export async function getPitr(services: TargetServices): Promise<PitrView> {
  const server = pitrServerOf(services);
  const [overview, schedules] = await Promise.all([
    overviewOf(services, server),
    schedulesOf(services, server),
  ]);
  return { ...overview, settings: server.pitr, schedules };
}

/** The server's base backups in its archive's catalog, newest first. */
export async function listBaseBackups(services: TargetServices): Promise<BaseBackupManifest[]> {
  const archive = await services.pitrArchives.open(pitrServerOf(services));
  return (await archive.baseBackups()).manifests;
}

export async function enqueueBaseBackup(
  services: TargetServices,
  requester: Requester,
  body: {
    checkpoint?: 'fast' | 'spread' | undefined;
    label?: string | null | undefined;
    verify?: boolean | undefined;
  },
): Promise<string> {
  const server = pitrServerOf(services);
  return enqueue(services.queues, services.config, 'basebackup', {
    server: server.name,
    checkpoint: body.checkpoint ?? server.pitr.baseBackup.checkpoint,
    verify: body.verify ?? true,
    label: body.label ?? null,
    type: 'manual',
    targetName: services.target.info.name,
    ...stamp(requester),
  });
}

/** The server's retention policy applied to its archive: base backups, and the WAL they need. */
export async function enqueuePitrCleanup(
  services: TargetServices,
  requester: Requester,
  body: { dryRun?: boolean | undefined },
): Promise<string> {
  const server = pitrServerOf(services);
  return enqueue(services.queues, services.config, 'pitr-cleanup', {
    server: server.name,
    retention: server.pitr.retention,
    timeZone: server.pitr.timeZone,
    dryRun: body.dryRun ?? false,
    targetName: services.target.info.name,
    ...stamp(requester),
  });
}

/**
 * A point-in-time restore of the target's database, refused before queueing when restores are
 * off, the confirmation does not name the database it replaces, or the time is one no restore
 * can reach (in the future, outside the recoverable window, in a gap). The worker checks the
 * window again when it runs.
 */
export async function enqueuePitrRestore(
  services: TargetServices,
  requester: Requester,
  body: {
    pointInTime: string;
    confirm?: string | undefined;
    target?: string | undefined;
    keepDump?: boolean | undefined;
  },
): Promise<string> {
  const server = pitrServerOf(services);
  const info = services.target.info;
  if (!info.settings.restoreEnabled) {
    throw new AppError(
      'RESTORE_DISABLED',
      `restores of target ${info.name} are disabled (restore: false)`,
    );
  }
  const target = body.target ?? services.target.database.database;
  if (target === services.target.maintenance.database || /^template[01]$/.test(target)) {
    throw new AppError('INVALID_DATABASE_NAME', `cannot restore into ${target}`);
  }
  if (body.confirm !== target) {
    throw new AppError(
      'CONFIRMATION_REQUIRED',
      `a restore replaces database ${target}: send "confirm": "${target}" to go ahead`,
    );
  }
  const overview = await overviewOf(services, server);
  const problem = pointInTimeProblem(body.pointInTime, overview);
  if (problem) throw problem;
  return enqueue(services.queues, services.config, 'pitr-restore', {
    pointInTime: body.pointInTime,
    target,
    keepDump: body.keepDump ?? false,
    targetName: info.name,
    ...stamp(requester),
  });
}

/** One server with PITR as health and metrics see it: its overview, or why there is none. */
export type ServerPitr =
  | { server: string; overview: PitrOverview; error?: undefined; code?: undefined }
  | { server: string; overview?: undefined; error: string; code: string };

/** Every server of the targets file with PITR on, each read on its own: one failing is one entry. */
export async function pitrOfServers(
  services: ApiServices,
  now = new Date(),
): Promise<ServerPitr[]> {
  const servers = services.registry.targets.servers.filter((server) => server.pitr);
  return Promise.all(
    servers.map(async (server): Promise<ServerPitr> => {
      try {
        return { server: server.name, overview: await overviewOf(services, server, now) };
      } catch (error) {
        if (error instanceof AppError) {
          return { server: server.name, error: error.message, code: error.code };
        }
        services.logger.warn({ server: server.name, err: error }, 'PITR overview failed');
        return {
          server: server.name,
          error: "its archive's catalog could not be read",
          code: 'INTERNAL_ERROR',
        };
      }
    }),
  );
}
