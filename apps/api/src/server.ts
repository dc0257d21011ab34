import type { Config, Logger } from '@pgkeep/core';
import { loadTargets, loggerOptions } from '@pgkeep/core';
import { serverConnection, TargetRegistry } from '@pgkeep/engine';
import { clientConfig } from '@pgkeep/pg';
import { closeQueues, createRedisConnection, openQueues } from '@pgkeep/queue';
import { createBackupStore, createKeyRing } from '@pgkeep/storage';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import pg from 'pg';
import { app, BODY_LIMIT } from './app.js';
import { RequestLogController } from './plugins/app/request-log.js';
import type { ApiServices } from './services/api-services.js';
import { PitrArchives } from './services/pitr-archives.js';

export async function createServices(
  config: Config,
  logger: Logger,
  env: Record<string, string | undefined> = process.env,
): Promise<ApiServices> {
  // One key ring for every target's store (a passphrase costs an scrypt run to derive).
  const keyRing = await createKeyRing(config);
  const registry = new TargetRegistry(config, logger, loadTargets(config, env), keyRing);
  const pitrArchives = new PitrArchives(config, logger, keyRing);
  const redis = createRedisConnection(config.REDIS_URL, 'api', 'pgkeep-api');
  redis.on('error', (error) => logger.warn({ err: error.message }, 'redis connection error'));
  // Health's database: the panel's target's, else the lock server's (every worker needs it).
  const defaultName = registry.defaultTargetName();
  const healthDatabase = defaultName
    ? registry.require(defaultName).database
    : serverConnection(registry.targets.lockServer);
  const db = new pg.Pool({ ...clientConfig(healthDatabase, 'pgkeep-api'), max: 4 });
  db.on('error', (error) => logger.warn({ err: error.message }, 'database pool error'));
  return {
    config,
    logger,
    redis,
    db,
    queues: openQueues(redis, config.REDIS_PREFIX, {
      onError: (error) => logger.warn({ err: error.message }, 'queue error'),
    }),
    storage: defaultName
      ? await registry.storeFor(registry.require(defaultName).info)
      : await createBackupStore(config, logger, { keyRing }),
    registry,
    pitrArchives,
    reloadTargets: () => {
      registry.replace(loadTargets(config, env));
      pitrArchives.keepOnly(registry.targets.servers);
    },
  };
}

export async function closeServices(services: ApiServices): Promise<void> {
  await closeQueues(services.queues).catch(() => {});
  await services.redis.quit().catch(() => {});
  await services.db.end().catch(() => {});
}

/** `logStream`: where the request lines go instead of stdout (tests read them). */
export async function buildServer(
  config: Config,
  services: ApiServices,
  options: { logStream?: { write(line: string): void } } = {},
): Promise<FastifyInstance> {
  const logger = loggerOptions(config.LOG_LEVEL, 'pgkeep-api', { format: config.LOG_FORMAT });
  const server = Fastify({
    logger: options.logStream ? { ...logger, stream: options.logStream } : logger,
    logController: new RequestLogController(),
    bodyLimit: BODY_LIMIT,
    // Long parameters reach validation, which answers 400 with a code instead of a bare 404.
    routerOptions: { maxParamLength: 20_000 },
    // A URL the router cannot decode (`/api/backup/%ZZ`) still gets the envelope and a code.
    frameworkErrors: (error, _request, rawReply) => {
      const reply = rawReply as unknown as FastifyReply;
      const badUrl = error.code === 'FST_ERR_BAD_URL';
      void reply.code(badUrl ? 400 : 500).send({
        success: false,
        error: badUrl
          ? { code: 'VALIDATION_ERROR', message: 'the URL is not valid' }
          : { code: 'INTERNAL_ERROR', message: 'internal error' },
      });
    },
  });
  await server.register(app, { services });
  return server;
}
