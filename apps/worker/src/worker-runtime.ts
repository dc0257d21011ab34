import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import os from 'node:os';
import {
  AppError,
  type Config,
  ConfigError,
  derivedJobId,
  discoveredTargetName,
  type JobPayload,
  type JobResult,
  jobCatalog,
  type Logger,
  loadTargets,
  pitrScheduleLabels,
  queueNames,
  scheduleJobs,
  scheduleNames,
  schedulerId,
  scheduleStartLines,
} from '@pgkeep/core';
import {
  dropAbandonedScratchDatabases,
  type EngineContext,
  type ResolvedTarget,
  rebuildCatalog,
  serverConnection,
  signCatalog,
  sweepLeftovers,
  TargetRegistry,
} from '@pgkeep/engine';
import { createJobNotifications, redisNotificationCounter } from '@pgkeep/notify';
import { AdvisoryLocks, toolVersion } from '@pgkeep/pg';
import {
  applyPitrSchedules,
  applySchedules,
  applyTargetSchedules,
  cancelRequestedBy,
  carryOverLegacyPrefix,
  closeQueues,
  createRedisConnection,
  enqueueWithId,
  listenForCancels,
  listenForReloads,
  openQueues,
  type PgkeepQueues,
  publishHeartbeat,
  recordedOutcome,
  recordOutcome,
  recordVerifyOutcome,
  removeHeartbeat,
  verifyOutcomeOf,
} from '@pgkeep/queue';
import { createKeyRing } from '@pgkeep/storage';
import { Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { notifyWhenFinished } from './job-notifications.js';
import { countJobOutcomes } from './job-outcome-metrics.js';
import { PitrRuntime } from './pitr-runtime.js';
import { createProcessor } from './processors.js';

export interface WorkerRuntime {
  workerId: string;
  /** Graceful: stop taking jobs, let running ones finish within the deadline, then abort them. */
  close(): Promise<void>;
  /** Reads the targets file again (SIGHUP); schedules follow it. */
  reload(requestedBy: string): Promise<void>;
}

export async function startWorkerRuntime(
  config: Config,
  logger: Logger,
  env: Record<string, string | undefined> = process.env,
): Promise<WorkerRuntime> {
  const workerId = `${os.hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
  const keyRing = await createKeyRing(config);
  const registry = new TargetRegistry(config, logger, loadTargets(config, env), keyRing);
  const toolEnv = { PATH: process.env.PATH };
  const pgDump = await toolVersion('pg_dump', toolEnv);
  const pgRestore = await toolVersion('pg_restore', toolEnv);
  if (config.UNUSED_S3_DESTINATIONS.length > 0) {
    logger.warn(
      { unused: config.UNUSED_S3_DESTINATIONS, destinations: config.BACKUP_DESTINATIONS },
      'S3 destinations are configured but not in BACKUP_DESTINATIONS: no copies go there',
    );
  }
  await mkdir(config.BACKUP_DIR, { recursive: true });
  // One lock server for every worker, whatever servers the targets are on. A backup takes
  // three locks before pg_dump starts: three sessions kept ready save three connections.
  const locks = new AdvisoryLocks(
    serverConnection(registry.targets.lockServer),
    config.LOCK_NAMESPACE,
    logger,
    { spares: 3 },
  );
  const base = { config, keyRing, locks, logger, pgDump, pgRestore };
  const engineOf = async (resolved: ResolvedTarget): Promise<EngineContext> => ({
    ...base,
    logger: logger.child({ target: resolved.info.name }),
    target: resolved.database,
    maintenance: resolved.maintenance,
    targetInfo: resolved.info,
    storage: await registry.storeFor(resolved.info),
  });
  const engineFor = async (name: string) => engineOf(registry.require(name));

  // A worker that died mid-backup left a partial file, mid-restore a temporary database:
  // remove them, unless a backup (or restore) is running somewhere right now. Backups whose
  // manifests a bucket holds but the local catalog lost come back into the list.
  const { targets: atStart, unreachable } = await registry.expand();
  if (unreachable.length > 0) {
    logger.warn({ targets: unreachable }, 'discovery targets whose server is not reachable');
  }
  for (const resolved of atStart) {
    const engine = await engineOf(resolved);
    await engine.storage.ensureDir();
    await sweepLeftovers(engine);
    // A catalog key in force for the first time signs the manifests written before it.
    await signCatalog(engine);
    if (config.CATALOG_REBUILD_ON_START) await rebuildCatalog(engine);
  }
  for (const server of registry.targets.servers) {
    const maintenance = serverConnection(server);
    await dropAbandonedScratchDatabases({ config, locks, logger, maintenance }).catch(
      (error: unknown) => {
        logger.warn(
          { server: server.name, err: (error as Error).message },
          'scratch databases of the server not checked: it is not reachable',
        );
      },
    );
  }

  const connection = createRedisConnection(config.REDIS_URL, 'worker', `pgkeep-worker:${workerId}`);
  connection.on('error', (error) => logger.error({ err: error }, 'redis connection error'));
  const prefix = config.REDIS_PREFIX;
  const legacy = await carryOverLegacyPrefix(connection, config.QUEUE_PREFIX, prefix);
  if (legacy.copied.length > 0) {
    logger.info(
      { copied: legacy.copied },
      'carried over from the Redis prefix of earlier releases',
    );
  }
  if (legacy.strandedJobs > 0) {
    logger.warn(
      { jobs: legacy.strandedJobs, legacyPrefix: `${config.QUEUE_PREFIX}:` },
      'jobs queued before the upgrade wait under the old Redis prefix, which no worker takes: queue them again',
    );
  }
  const scheduleQueues = openQueues(connection, prefix, {
    onError: (error) => logger.error({ err: error }, 'queue error'),
  });
  const pitr = new PitrRuntime(config, logger, keyRing, locks, connection, workerId);
  const processor = createProcessor(
    {
      logger,
      engineFor,
      fanOut: (payload, parentJobId, jobLogger) =>
        queueDiscoveredJobs(registry, scheduleQueues, config, payload, parentJobId, jobLogger),
      pitrFor: (server) => pitr.contextFor(server),
    },
    {
      cancelledBy: (jobId) => cancelRequestedBy(connection, prefix, jobId),
      earlierResult: (jobId) => recordedOutcome(connection, prefix, jobId),
      recordResult: (jobId, result) => recordOutcome(connection, prefix, jobId, result),
      recordVerification: (jobId, result, targetName) =>
        recordVerifyOutcome(connection, prefix, verifyOutcomeOf(result, jobId), targetName),
    },
  );
  const common = {
    connection,
    prefix: config.REDIS_PREFIX,
    lockDuration: config.JOB_LOCK_DURATION_MS,
    stalledInterval: config.JOB_STALLED_INTERVAL_MS,
    // A job whose worker died is retried once on another worker, then failed as stalled.
    maxStalledCount: 1,
    autorun: true,
  };
  const workers = [
    new Worker(queueNames.backups, processor, {
      ...common,
      concurrency: config.BACKUP_CONCURRENCY,
    }),
    // Destructive jobs also take one of the DESTRUCTIVE_CONCURRENCY slots: no more at a time
    // per worker, so a waiting job does not hold a worker slot that a second one would need.
    new Worker(queueNames.maintenance, processor, {
      ...common,
      concurrency: config.DESTRUCTIVE_CONCURRENCY,
    }),
  ];
  // Webhook/email on a job's final outcome; sent in the background, never holding a job up.
  const notifications = createJobNotifications(
    config,
    logger,
    redisNotificationCounter(connection, prefix),
  );
  for (const worker of workers) {
    worker.on('error', (error) => logger.error({ err: error, queue: worker.name }, 'worker error'));
    countJobOutcomes(worker, connection, config.REDIS_PREFIX, logger);
    notifyWhenFinished(worker, notifications, (targetName) => registry.resolve(targetName));
    worker.on('failed', (job, error) => {
      if (job && error.message.includes('stalled')) {
        logger.error({ jobId: job.id, job: job.name }, 'job failed: its worker stopped responding');
      }
    });
  }
  await Promise.all(workers.map((worker) => worker.waitUntilReady()));

  await startSchedules(config, connection, scheduleQueues, registry, logger);
  await pitr.apply(registry.targets.servers);
  await pitr.sweepScratch().catch((error: unknown) => {
    logger.warn({ err: error }, 'scratch directories of PITR restores not swept');
  });

  // A new targets file: read again on SIGHUP or when an admin asks through the API. Running
  // jobs keep the target they resolved; schedules follow the file. A file that no longer
  // parses changes nothing (the error is logged, the last good file stays in force).
  let reloading = Promise.resolve();
  const reload = (requestedBy: string) => {
    reloading = reloading.then(async () => {
      try {
        const next = loadTargets(config, env);
        registry.replace(next);
        await startSchedules(config, connection, scheduleQueues, registry, logger);
        await pitr.apply(next.servers);
        logger.info(
          { requestedBy, targets: next.targets.map((target) => target.name) },
          'targets reloaded',
        );
      } catch (error) {
        logger.error(
          {
            requestedBy,
            err: error instanceof ConfigError ? error.issues : (error as Error).message,
          },
          'targets file not reloaded: the previous one stays in force',
        );
      }
    });
    return reloading;
  };

  // A cancellation asked for through the API reaches whichever worker runs the job.
  const subscriber = connection.duplicate();
  subscriber.on('error', (error) => logger.error({ err: error }, 'redis subscriber error'));
  await listenForCancels(subscriber, config.REDIS_PREFIX, ({ jobId, requestedBy }) => {
    for (const worker of workers) {
      if (worker.cancelJob(jobId, `cancelled by ${requestedBy}`)) {
        logger.info({ jobId, requestedBy }, 'job cancellation requested');
      }
    }
  });
  await listenForReloads(
    subscriber,
    config.REDIS_PREFIX,
    (requestedBy) => void reload(requestedBy),
  );

  const startedAt = new Date().toISOString();
  const beat = () =>
    publishHeartbeat(
      connection,
      config.REDIS_PREFIX,
      {
        workerId,
        hostname: os.hostname(),
        pid: process.pid,
        startedAt,
        seenAt: new Date().toISOString(),
        pgDump,
        pgRestore,
      },
      config.WORKER_HEARTBEAT_MS * 3,
    ).catch((error: unknown) => logger.warn({ err: error }, 'heartbeat not published'));
  await beat();
  const heartbeat = setInterval(() => void beat(), config.WORKER_HEARTBEAT_MS);
  heartbeat.unref();

  logger.info(
    {
      workerId,
      queues: Object.values(queueNames),
      backupDir: config.BACKUP_DIR,
      destinations: config.BACKUP_DESTINATIONS,
      encryption: keyRing.writeKeyId ? { keyId: keyRing.writeKeyId } : 'off',
      targets: registry.targets.targets.map((target) => target.name),
      targetsFrom: registry.targets.source,
      pgDump: pgDump.version,
      backupConcurrency: config.BACKUP_CONCURRENCY,
    },
    'worker started',
  );

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      clearInterval(heartbeat);
      const deadline = setTimeout(() => {
        logger.warn(
          { timeoutMs: config.SHUTDOWN_TIMEOUT_MS },
          'shutdown deadline: aborting running jobs',
        );
        for (const worker of workers) worker.cancelAllJobs('worker shutting down');
      }, config.SHUTDOWN_TIMEOUT_MS);
      deadline.unref();
      await Promise.all([...workers.map((worker) => worker.close()), pitr.close()]);
      clearTimeout(deadline);
      // The last jobs' notifications get a bounded wait before the connection they count on goes.
      await notifications.close(config.NOTIFY_SHUTDOWN_TIMEOUT_MS);
      await reloading;
      await closeQueues(scheduleQueues).catch(() => {});
      await locks.close();
      await removeHeartbeat(connection, config.REDIS_PREFIX, workerId).catch(() => {});
      await subscriber.quit().catch(() => {});
      await connection.quit().catch(() => {});
      logger.info({ workerId }, 'worker stopped');
    })();
    return closing;
  };
  return { workerId, close, reload };
}

/**
 * Upserts the schedules (BullMQ job schedulers, by fixed ids: any number of workers starting
 * together leave one of each) of every target and says what runs when. The target `default`
 * keeps the seed's schedule ids and their runtime changes; other targets' come from the file.
 */
async function startSchedules(
  config: Config,
  connection: Redis,
  queues: PgkeepQueues,
  registry: TargetRegistry,
  logger: Logger,
): Promise<void> {
  const defaultTarget = registry.configured('default');
  if (defaultTarget && defaultTarget.database !== null) {
    const { applied, droppedOverrides } = await applySchedules(
      queues,
      connection,
      config,
      registry.targets.source === 'file' ? defaultTarget : undefined,
    );
    if (droppedOverrides.length > 0) {
      logger.info(
        { schedules: droppedOverrides },
        'schedule configuration changed since a runtime change: the configuration applies',
      );
    }
    logger.info({ timeZone: defaultTarget.timeZone }, 'scheduler started');
    for (const { name, settings, source } of applied) {
      const fields = {
        target: 'default',
        schedule: name,
        cron: settings.pattern,
        timeZone: settings.timeZone,
        source,
      };
      if (!settings.enabled) {
        logger.info(fields, `${name} schedule off`);
        continue;
      }
      const line = scheduleStartLines[name](defaultTarget);
      logger.info({ ...fields, ...line.fields }, line.message);
    }
  } else {
    // No target `default` (a targets file without one): its schedules must not run.
    for (const name of scheduleNames) {
      await queues[jobCatalog[scheduleJobs[name]].queue].removeJobScheduler(schedulerId(name));
    }
  }
  const pitrSchedules = await applyPitrSchedules(
    queues,
    config,
    registry.targets.servers,
    (server) =>
      registry.targets.targets.find((target) => target.server === server)?.name ?? 'default',
  );
  for (const schedule of pitrSchedules.applied) {
    logger.info(
      {
        server: schedule.server,
        schedule: schedule.name,
        cron: schedule.pattern,
        timeZone: schedule.timeZone,
        scheduler: schedule.schedulerId,
      },
      `${pitrScheduleLabels[schedule.name]} schedule of server ${schedule.server}`,
    );
  }
  if (pitrSchedules.removed.length > 0) {
    logger.info(
      { removed: pitrSchedules.removed },
      'PITR schedules of servers without PITR removed',
    );
  }
  const { applied, removed } = await applyTargetSchedules(queues, config, registry.targets.targets);
  for (const schedule of applied) {
    logger.info(
      {
        target: schedule.target,
        schedule: schedule.name,
        cron: schedule.settings.pattern,
        timeZone: schedule.settings.timeZone,
        scheduler: schedule.schedulerId,
      },
      `${schedule.name} schedule of target ${schedule.target}`,
    );
  }
  if (removed.length > 0) logger.info({ removed }, 'schedules of removed targets removed');
}

const DISCOVERED_JOB_PRIORITY = 10;

/**
 * A discovery target's scheduled run: the scheduled job once for each database the target picks
 * now, each as its own target (`<server>/<database>`), under ids derived from this run's, so a
 * retried run queues nothing twice.
 */
async function queueDiscoveredJobs(
  registry: TargetRegistry,
  queues: PgkeepQueues,
  config: Config,
  payload: JobPayload<'discover'>,
  parentJobId: string,
  logger: Logger,
): Promise<JobResult<'discover'>> {
  const configured = registry.configured(payload.targetName);
  if (!configured || configured.database !== null) {
    throw new AppError('TARGET_NOT_FOUND', `discovery target ${payload.targetName} not found`);
  }
  const databases = await registry.discover(configured);
  const queued: { target: string; jobId: string }[] = [];
  for (const database of databases) {
    const target = discoveredTargetName(configured.server, database);
    const jobId = derivedJobId(payload.job, parentJobId, target);
    await enqueueWithId(
      queues,
      config,
      payload.job,
      // The run's own time: a schedule's template carries none.
      { ...payload.template, targetName: target, requestedAt: payload.requestedAt },
      jobId,
      // Behind every job without a priority: the next scheduled run (a `discover` job) and an
      // admin's own request are taken before the rest of a long discovery run's backlog, so a
      // busy queue never makes a schedule miss its next time (BullMQ plans the next run of a
      // schedule when a worker takes the current one, and skips times already past).
      DISCOVERED_JOB_PRIORITY,
    );
    queued.push({ target, jobId });
  }
  logger.info({ job: payload.job, queued: queued.length }, 'discovered databases queued');
  return { job: payload.job, queued };
}
