import { randomUUID } from 'node:crypto';
import os from 'node:os';
import { type Config, type Logger, queueNames } from '@pgkeep/core';
import {
  dropAbandonedScratchDatabases,
  type EngineContext,
  rebuildCatalog,
  sweepLeftovers,
} from '@pgkeep/engine';
import { createJobNotifications, redisNotificationCounter } from '@pgkeep/notify';
import { AdvisoryLocks, libpqEnv, parseDatabaseUrl, toolVersion, withDatabase } from '@pgkeep/pg';
import {
  applySchedules,
  cancelRequestedBy,
  closeQueues,
  createRedisConnection,
  listenForCancels,
  openQueues,
  publishHeartbeat,
  recordedOutcome,
  recordOutcome,
  recordVerifyOutcome,
  removeHeartbeat,
  retentionFromConfig,
  verifyOutcomeOf,
} from '@pgkeep/queue';
import { createBackupStore, createKeyRing } from '@pgkeep/storage';
import { Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { notifyWhenFinished } from './job-notifications.js';
import { countJobOutcomes } from './job-outcome-metrics.js';
import { createProcessor } from './processors.js';

export interface WorkerRuntime {
  workerId: string;
  /** Graceful: stop taking jobs, let running ones finish within the deadline, then abort them. */
  close(): Promise<void>;
}

export async function startWorkerRuntime(config: Config, logger: Logger): Promise<WorkerRuntime> {
  const workerId = `${os.hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
  const target = parseDatabaseUrl(config.DATABASE_URL);
  const toolEnv = libpqEnv(target, { PATH: process.env.PATH });
  const pgDump = await toolVersion('pg_dump', toolEnv);
  const pgRestore = await toolVersion('pg_restore', toolEnv);
  if (config.UNUSED_S3_DESTINATIONS.length > 0) {
    logger.warn(
      { unused: config.UNUSED_S3_DESTINATIONS, destinations: config.BACKUP_DESTINATIONS },
      'S3 destinations are configured but not in BACKUP_DESTINATIONS: no copies go there',
    );
  }
  const storage = await createBackupStore(config, logger);
  await storage.ensureDir();
  const keyRing = await createKeyRing(config);
  const locks = new AdvisoryLocks(
    withDatabase(target, config.MAINTENANCE_DATABASE),
    config.LOCK_NAMESPACE,
    logger,
  );
  const engine: EngineContext = {
    config,
    storage,
    keyRing,
    locks,
    target,
    logger,
    pgDump,
    pgRestore,
  };

  // A worker that died mid-backup left a partial file, mid-restore a temporary database:
  // remove them, unless a backup (or restore) is running somewhere right now.
  await sweepLeftovers(engine);
  await dropAbandonedScratchDatabases(engine);
  // Backups whose manifests a bucket holds but the local catalog lost come back into the list.
  if (config.CATALOG_REBUILD_ON_START) await rebuildCatalog(engine);

  const connection = createRedisConnection(config.REDIS_URL, 'worker', `pgkeep-worker:${workerId}`);
  connection.on('error', (error) => logger.error({ err: error }, 'redis connection error'));
  const prefix = config.QUEUE_PREFIX;
  const processor = createProcessor(engine, {
    cancelledBy: (jobId) => cancelRequestedBy(connection, prefix, jobId),
    earlierResult: (jobId) => recordedOutcome(connection, prefix, jobId),
    recordResult: (jobId, result) => recordOutcome(connection, prefix, jobId, result),
    recordVerification: (jobId, result) =>
      recordVerifyOutcome(connection, prefix, verifyOutcomeOf(result, jobId)),
  });
  const common = {
    connection,
    prefix: config.QUEUE_PREFIX,
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
    // Destructive jobs also take the cluster-wide lock; one at a time per worker keeps a
    // waiting job from holding a slot that a second one would need.
    new Worker(queueNames.maintenance, processor, { ...common, concurrency: 1 }),
  ];
  // Webhook/email on a job's final outcome; sent in the background, never holding a job up.
  const notifications = createJobNotifications(
    config,
    logger,
    redisNotificationCounter(connection, prefix),
  );
  for (const worker of workers) {
    worker.on('error', (error) => logger.error({ err: error, queue: worker.name }, 'worker error'));
    countJobOutcomes(worker, connection, config.QUEUE_PREFIX, logger);
    notifyWhenFinished(worker, notifications, target.database);
    worker.on('failed', (job, error) => {
      if (job && error.message.includes('stalled')) {
        logger.error({ jobId: job.id, job: job.name }, 'job failed: its worker stopped responding');
      }
    });
  }
  await Promise.all(workers.map((worker) => worker.waitUntilReady()));

  await startSchedules(config, connection, logger);

  // A cancellation asked for through the API reaches whichever worker runs the job.
  const subscriber = connection.duplicate();
  subscriber.on('error', (error) => logger.error({ err: error }, 'redis subscriber error'));
  await listenForCancels(subscriber, config.QUEUE_PREFIX, ({ jobId, requestedBy }) => {
    for (const worker of workers) {
      if (worker.cancelJob(jobId, `cancelled by ${requestedBy}`)) {
        logger.info({ jobId, requestedBy }, 'job cancellation requested');
      }
    }
  });

  const startedAt = new Date().toISOString();
  const beat = () =>
    publishHeartbeat(
      connection,
      config.QUEUE_PREFIX,
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
      backupDir: storage.dir,
      destinations: storage.destinations.map((destination) => destination.name),
      encryption: keyRing.writeKeyId ? { keyId: keyRing.writeKeyId } : 'off',
      database: target.database,
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
      await Promise.all(workers.map((worker) => worker.close()));
      clearTimeout(deadline);
      // The last jobs' notifications get a bounded wait before the connection they count on goes.
      await notifications.close(config.NOTIFY_SHUTDOWN_TIMEOUT_MS);
      await removeHeartbeat(connection, config.QUEUE_PREFIX, workerId).catch(() => {});
      await subscriber.quit().catch(() => {});
      await connection.quit().catch(() => {});
      logger.info({ workerId }, 'worker stopped');
    })();
    return closing;
  };
  return { workerId, close };
}

/**
 * Upserts the schedules (BullMQ job schedulers, by fixed ids: any number of workers starting
 * together leave one of each) and says what runs when.
 */
async function startSchedules(config: Config, connection: Redis, logger: Logger): Promise<void> {
  const queues = openQueues(connection, config.QUEUE_PREFIX, {
    onError: (error) => logger.error({ err: error }, 'queue error'),
  });
  try {
    const { applied, droppedOverrides } = await applySchedules(queues, connection, config);
    if (droppedOverrides.length > 0) {
      logger.info(
        { schedules: droppedOverrides },
        'schedule configuration changed since a runtime change: the configuration applies',
      );
    }
    logger.info({ timeZone: config.BACKUP_TIMEZONE }, 'scheduler started');
    for (const { name, settings, source } of applied) {
      const fields = {
        schedule: name,
        cron: settings.pattern,
        timeZone: settings.timeZone,
        source,
      };
      if (!settings.enabled) logger.info(fields, `${name} schedule off`);
      else if (name === 'backup') logger.info(fields, 'backup schedule: backups run at this cron');
      else if (name === 'cleanup') {
        const retention = retentionFromConfig(config);
        logger.info(
          {
            ...fields,
            retention,
            ...(retention.kind === 'keep-last' ? { keepLast: retention.keepLast } : {}),
          },
          retention.kind === 'keep-last'
            ? `cleanup schedule: keeps the last ${retention.keepLast} backups`
            : 'cleanup schedule: keeps backups by GFS policy',
        );
      } else
        logger.info(
          { ...fields, restore: config.VERIFY_RESTORE },
          'verify schedule: verifies the newest backup',
        );
    }
  } finally {
    await closeQueues(queues);
  }
}
