import fastifyJwt from '@fastify/jwt';
import {
  decodeJobError,
  type JobName,
  jobCatalog,
  jobNameOfId,
  loadConfig,
  loggerOptions,
} from '@pgkeep/core';
import { createRedisConnection, findJob, openQueues } from '@pgkeep/queue';
import Fastify from 'fastify';
import fp from 'fastify-plugin';
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import authFailures from '../../apps/api/src/plugins/app/auth-failures.js';
import authorize from '../../apps/api/src/plugins/app/authorize.js';
import errorHandler from '../../apps/api/src/plugins/app/error-handler.js';
import jwt from '../../apps/api/src/plugins/external/jwt.js';
import rateLimit from '../../apps/api/src/plugins/external/rate-limit.js';
import { jobIdParams, jobViewSchema, okEnvelope } from '../../apps/api/src/schemas.js';

/**
 * A prototype of `GET /api/jobs/:jobId` for bench/api-variants.ts: pgkeep's own plugins
 * (token check, admin claims, error handler) and schemas, with the changes proposed for
 * section 5 switched on one by one through VARIANT (comma-separated):
 *   pipelined  the three Redis reads of findJob sent together instead of one after another
 *   jwt-cache  fast-jwt's verified-token cache (`verify: { cache: true }`)
 *   json       the 200 answer serialized by JSON.stringify instead of zod encode + stringify
 *   logger     Fastify with pgkeep's logger options (pino, redaction, a child logger per
 *              request) as the API has them, instead of no logger
 * With VARIANT empty it does what pgkeep does (a check that the prototype is faithful).
 */
const config = loadConfig(process.env);
const variant = new Set((process.env.VARIANT ?? '').split(',').filter(Boolean));
const redis = createRedisConnection(config.REDIS_URL, 'api', 'pgkeep-bench-variant');
redis.on('error', () => {});
const queues = openQueues(redis, config.REDIS_PREFIX, { onError: () => {} });
const lookup = { queues, redis, prefix: config.REDIS_PREFIX };

/** Same answer as findJob; the state, the job and the cancel marker asked for at once. */
async function findJobPipelined(jobId: string) {
  const name = jobNameOfId(jobId) as JobName;
  const queue = queues[jobCatalog[name].queue];
  // Issued in this order on one connection, so Redis reads the state before the hash
  // (findJob's rule); in pgkeep itself this would be one MULTI.
  const [state, job, cancelledBy] = await Promise.all([
    queue.getJobState(jobId),
    queue.getJob(jobId),
    redis.get(`${config.REDIS_PREFIX}:pgkeep-cancel:${jobId}`),
  ]);
  if (!job) throw new Error('not found');
  const st =
    state === 'active' ? 'running' : state === 'completed' || state === 'failed' ? state : 'queued';
  const iso = (ms: number | undefined) => (ms ? new Date(ms).toISOString() : null);
  return {
    jobId,
    name,
    state: st,
    progress: job.progress ?? null,
    result: st === 'completed' ? (job.returnvalue ?? null) : null,
    error: st === 'failed' && job.failedReason ? decodeJobError(job.failedReason) : null,
    cancelRequestedBy: cancelledBy,
    lastError: job.failedReason ? decodeJobError(job.failedReason) : null,
    attemptsMade: job.attemptsMade,
    requestedBy: (job.data as { requestedBy?: string }).requestedBy ?? null,
    createdAt: iso(job.timestamp) ?? new Date(0).toISOString(),
    startedAt: iso(job.processedOn),
    finishedAt: iso(job.finishedOn),
  };
}

const cachedJwt = fp(
  async (app) => {
    await app.register(fastifyJwt, {
      secret: config.JWT_SECRET ?? '',
      verify: { algorithms: ['HS256'], cache: true },
    });
  },
  { name: 'jwt' },
);

const server = Fastify({
  logger: variant.has('logger') ? loggerOptions(config.LOG_LEVEL, 'pgkeep-api') : false,
});
server.setValidatorCompiler(validatorCompiler);
server.setSerializerCompiler(serializerCompiler);
await server.register(errorHandler);
await server.register(variant.has('jwt-cache') ? cachedJwt : jwt, { config });
await server.register(rateLimit);
await server.register(authFailures, { config });
await server.register(authorize, { config });
await server.register(async (scope) => {
  scope.addHook('onRequest', scope.requireAdmin);
  scope.get(
    '/api/jobs/:jobId',
    {
      schema: { params: jobIdParams, response: { 200: okEnvelope(jobViewSchema) } },
      ...(variant.has('json') ? { serializerCompiler: () => JSON.stringify } : {}),
    },
    async (request) => {
      const { jobId } = request.params as { jobId: string };
      return {
        success: true as const,
        data: variant.has('pipelined')
          ? await findJobPipelined(jobId)
          : await findJob(lookup, jobId),
      };
    },
  );
});
process.on('SIGTERM', () => {
  server.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
await server.listen({ host: '127.0.0.1', port: config.PORT });
