import type { BackupManifest } from '@pgkeep/core';
import {
  newestScheduledFailure,
  readVerifyOutcomes,
  type ScheduledRunFailure,
  type VerifyOutcome,
} from '@pgkeep/queue';
import type { ApiServices } from './api-services.js';
import {
  type Check,
  type DependencyChecks,
  probeDependencies,
  timed,
  whenReady,
} from './health-service.js';
import { pitrOfServers, type ServerPitr } from './pitr-service.js';
import { listTargets, type TargetView } from './target-service.js';

export type HealthStatus = 'ok' | 'warning' | 'error';

export interface HealthReason {
  code: string;
  severity: Exclude<HealthStatus, 'ok'>;
  message: string;
}

/** The newest backup by completion time (the list is ordered by start time). */
export function newestCompleted(manifests: BackupManifest[]): BackupManifest | undefined {
  let newest: BackupManifest | undefined;
  for (const manifest of manifests) {
    if (!newest || Date.parse(manifest.completedAt) > Date.parse(newest.completedAt))
      newest = manifest;
  }
  return newest;
}

const gib = (bytes: number) => `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
const mib = (bytes: number) => `${(bytes / 1024 ** 2).toFixed(2)} MiB`;

function duration(seconds: number): string {
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7_200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3_600).toFixed(1)} h`;
}

/** What the quick check found, as reasons: every failing dependency is an error. */
function dependencyReasons(checks: DependencyChecks): HealthReason[] {
  const reasons: HealthReason[] = [];
  const error = (code: string, message: string) =>
    reasons.push({ code, severity: 'error', message });
  const why = (check: Check) => (check.error ? `: ${String(check.error)}` : '');
  if (!checks.redis.ok) error('REDIS_UNAVAILABLE', `Redis is not reachable${why(checks.redis)}`);
  if (!checks.database.ok)
    error('DATABASE_UNAVAILABLE', `the database is not reachable${why(checks.database)}`);
  if (!checks.storage.ok) error('STORAGE_NOT_WRITABLE', 'the backup directory is not writable');
  // With Redis down, nothing is known of the workers: that is the Redis reason above.
  if (checks.redis.ok && !checks.workers.ok)
    error('NO_WORKER', `no worker is alive${why(checks.workers)}`);
  if (checks.workers.ok && checks.database.ok && !checks.pgDump.ok) {
    const versions = (checks.pgDump.versions as string[] | undefined)?.join(', ') ?? 'unknown';
    error(
      'PG_DUMP_TOO_OLD',
      `the workers' pg_dump (${versions}) is older than the server (${String(checks.database.serverVersion)}): backups fail`,
    );
  }
  return reasons;
}

/** Each server with PITR as health reports it; one whose overview cannot be read is unavailable. */
function pitrEntries(services: ApiServices, read: Check) {
  const servers: ServerPitr[] =
    'servers' in read
      ? (read.servers as ServerPitr[])
      : services.registry.targets.servers
          .filter((server) => server.pitr)
          .map((server) => ({
            server: server.name,
            error: String(read.error),
            code: 'INTERNAL_ERROR',
          }));
  return servers.map(({ server, overview, error }) =>
    overview
      ? {
          server,
          status: overview.status,
          reasons: overview.reasons,
          from: overview.from,
          to: overview.to,
          lagSeconds: overview.lagSeconds,
          gaps: overview.gaps.length,
        }
      : {
          server,
          status: 'unavailable' as const,
          reasons: [String(error)],
          from: null,
          to: null,
          lagSeconds: null,
          gaps: 0,
        },
  );
}

/**
 * The admin's view: the quick check's dependencies plus what a monitoring person asks of a
 * backup tool — is there a recent backup, did the last scheduled one fail, is the disk filling
 * up. Each finding is a reason with a stable code; the status is the worst reason's severity.
 * A fact that cannot be read (Redis down: no scheduled runs) is left to the reason that says so.
 */
export async function checkHealthDetail(services: ApiServices, now = () => Date.now()) {
  const { config, storage } = services;
  const remote = storage.destinations.filter((destination) => destination.kind !== 'local');
  const [{ checks }, catalog, disk, scheduled, reachable] = await Promise.all([
    probeDependencies(services),
    timed(async () => ({ ok: true, manifests: (await storage.listManifests()).manifests })),
    timed(async () => {
      await storage.ensureDir();
      return { ok: true, freeBytes: await storage.freeBytes() };
    }),
    timed(async () => {
      await whenReady(services.redis);
      return { ok: true, failure: await newestScheduledFailure(services.queues, 'backup') };
    }),
    // Each bucket: can this process write (and remove) an object there now?
    Promise.all(
      remote.map((destination) =>
        timed(async () => {
          await destination.checkWritable();
          return { ok: true };
        }, 5_000),
      ),
    ),
  ]);
  const reasons = dependencyReasons(checks);
  const warn = (code: string, message: string) =>
    reasons.push({ code, severity: 'warning', message });

  const manifests = 'manifests' in catalog ? (catalog.manifests as BackupManifest[]) : undefined;
  if (!manifests) {
    reasons.push({
      code: 'CATALOG_UNREADABLE',
      severity: 'error',
      message: `the backup list could not be read: ${String((catalog as Check).error)}`,
    });
  }
  const newest = manifests && newestCompleted(manifests);
  const maxAgeSeconds = config.HEALTH_MAX_BACKUP_AGE_HOURS * 3_600;
  const ageSeconds = newest ? (now() - Date.parse(newest.completedAt)) / 1000 : null;
  if (manifests && !newest) {
    reasons.push({ code: 'NO_BACKUP', severity: 'error', message: 'there is no backup at all' });
  } else if (newest && ageSeconds !== null && ageSeconds > maxAgeSeconds) {
    warn(
      'BACKUP_TOO_OLD',
      `the newest backup (${newest.id}) completed ${duration(ageSeconds)} ago, more than HEALTH_MAX_BACKUP_AGE_HOURS (${config.HEALTH_MAX_BACKUP_AGE_HOURS} h)`,
    );
  }

  // The last verify of each listed backup. The newest one found bad: the backup a restore
  // would reach for first cannot be trusted (error). An older one found bad and still listed:
  // someone may restore it (warning), until it is deleted or verified again.
  const verified =
    manifests && manifests.length > 0 && checks.redis.ok
      ? await timed(async () => {
          await whenReady(services.redis);
          const ids = manifests.map((manifest) => manifest.id);
          return {
            ok: true,
            outcomes: await readVerifyOutcomes(
              services.redis,
              config.REDIS_PREFIX,
              ids,
              services.registry.defaultTargetName() ?? 'default',
            ),
          };
        })
      : undefined;
  const outcomes =
    verified && 'outcomes' in verified
      ? (verified.outcomes as Map<string, VerifyOutcome>)
      : new Map<string, VerifyOutcome>();
  const failedChecks = (outcome: VerifyOutcome) =>
    outcome.failedChecks.map((check) => `${check.name}: ${check.detail}`).join('; ');
  const newestVerify = newest ? (outcomes.get(newest.id) ?? null) : null;
  if (newest && newestVerify && !newestVerify.ok) {
    reasons.push({
      code: 'BACKUP_FAILED_VERIFY',
      severity: 'error',
      message: `the newest backup (${newest.id}) failed its last verify (${newestVerify.jobId ?? 'job unknown'}, ${newestVerify.verifiedAt}): ${failedChecks(newestVerify)}`,
    });
  }
  const olderBad = (manifests ?? []).filter(
    (manifest) => manifest.id !== newest?.id && outcomes.get(manifest.id)?.ok === false,
  );
  if (olderBad.length > 0) {
    warn(
      'BAD_BACKUP_LISTED',
      `still listed, though their last verify found them bad (delete or verify again): ${olderBad.map((manifest) => manifest.id).join(', ')}`,
    );
  }

  // A scheduled run that failed after the newest scheduled backup started: the schedule is
  // broken until a later run succeeds. Manual backups in between do not clear it.
  const failure = 'failure' in scheduled ? (scheduled.failure as ScheduledRunFailure | null) : null;
  const newestScheduled = manifests?.find((manifest) => manifest.type === 'scheduled');
  if (
    failure &&
    manifests &&
    (!newestScheduled || Date.parse(failure.dueAt) > Date.parse(newestScheduled.createdAt))
  ) {
    reasons.push({
      code: 'SCHEDULED_BACKUP_FAILED',
      severity: 'error',
      message: `the last scheduled backup (${failure.jobId}) failed: [${failure.error.code}] ${failure.error.message}`,
    });
  }

  const destinations = remote.map((destination, index) => {
    const check = reachable[index] as Check;
    return {
      name: destination.name,
      kind: destination.kind,
      required: destination.required,
      ok: check.ok,
      ...(check.ok ? {} : { error: String(check.error) }),
    };
  });
  for (const destination of destinations) {
    if (destination.ok) continue;
    reasons.push({
      code: 'DESTINATION_UNREACHABLE',
      // A required destination that cannot be written fails every backup; an optional one
      // only leaves backups without that copy.
      severity: destination.required ? 'error' : 'warning',
      message: `destination ${destination.name} cannot be written: ${destination.error}`,
    });
  }
  if (newest && newest.failedCopies.length > 0) {
    warn(
      'COPY_MISSING',
      `the newest backup (${newest.id}) has no copy in ${newest.failedCopies.map((copy) => copy.destination).join(', ')}`,
    );
  }

  const freeBytes = 'freeBytes' in disk ? Number(disk.freeBytes) : null;
  if (freeBytes !== null && freeBytes < config.HEALTH_MIN_FREE_BYTES) {
    warn(
      'LOW_DISK_SPACE',
      `${gib(freeBytes)} free in the backup directory, less than HEALTH_MIN_FREE_BYTES (${gib(config.HEALTH_MIN_FREE_BYTES)})`,
    );
  }
  // Room for the next backup (about as big as the last) with a margin for growth: below
  // twice the last one's size, the next backup may fail with STORAGE_FULL.
  const lastLocal = manifests?.find((manifest) =>
    manifest.copies.some((copy) => copy.destination === 'local'),
  );
  if (freeBytes !== null && lastLocal && freeBytes < lastLocal.size * 2) {
    warn(
      'LOW_SPACE_FOR_BACKUP',
      `${mib(freeBytes)} free in the backup directory, less than twice the newest backup (${lastLocal.id}, ${mib(lastLocal.size)}): the next backup may not fit`,
    );
  }

  // Every target of a targets file: its newest backup's age and its last failure; every
  // server with PITR: its recoverable window.
  const [targets, pitrRead] = await Promise.all([
    timed(async () => ({ ok: true, list: await listTargets(services) })),
    timed(async () => ({ ok: true, servers: await pitrOfServers(services, new Date(now())) })),
  ]);
  const targetList = 'list' in targets ? (targets.list as TargetView[]) : [];
  if (services.registry.targets.source === 'file') {
    for (const target of targetList) {
      if (target.health === 'ok') continue;
      reasons.push({
        code: 'TARGET_UNHEALTHY',
        severity: target.health,
        message: `target ${target.name}: ${target.reasons.join(', ')}${target.lastFailure ? ` (last failure: ${target.lastFailure.job} [${target.lastFailure.code}] at ${target.lastFailure.at})` : ''}`,
      });
    }
  }

  const pitr = pitrEntries(services, pitrRead);
  for (const server of pitr) {
    if (server.status === 'ok') continue;
    // A server whose archive does not work is never worse than a warning: the backups of its
    // databases, which the reasons above judge, still work.
    warn(
      'PITR_UNHEALTHY',
      `point-in-time recovery of server ${server.server} is ${server.status}: ${server.reasons.join('; ')}`,
    );
  }

  const status: HealthStatus = reasons.some((reason) => reason.severity === 'error')
    ? 'error'
    : reasons.length > 0
      ? 'warning'
      : 'ok';
  return {
    status,
    reasons,
    checks,
    backupCount: manifests ? manifests.length : null,
    destinations,
    newestBackup:
      newest && ageSeconds !== null
        ? {
            id: newest.id,
            completedAt: newest.completedAt,
            ageSeconds: Math.round(ageSeconds),
            lastVerify: newestVerify,
          }
        : null,
    maxBackupAgeSeconds: maxAgeSeconds,
    lastScheduledBackupFailure: failure,
    freeBytes,
    minFreeBytes: config.HEALTH_MIN_FREE_BYTES,
    pitr,
    targets: targetList.map((target) => ({
      name: target.name,
      health: target.health,
      reasons: target.reasons,
      newestBackupAgeSeconds: target.lastBackup
        ? Math.round(target.lastBackup.ageHours * 3_600)
        : null,
      lastFailure: target.lastFailure,
    })),
  };
}
