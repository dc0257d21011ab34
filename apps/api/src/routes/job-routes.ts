import { cancelJob, findJob } from '@pgkeep/queue';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { errorResponses, jobIdParams, jobViewSchema, okEnvelope } from '../schemas.js';
import type { ApiServices } from '../services/api-services.js';

export const jobRoutes: FastifyPluginAsyncZod<{ services: ApiServices }> = async (
  app,
  { services },
) => {
  const lookup = {
    queues: services.queues,
    redis: services.redis,
    prefix: services.config.QUEUE_PREFIX,
  };
  app.addHook('onRequest', app.requireAdmin);
  app.get(
    '/api/jobs/:jobId',
    {
      schema: {
        params: jobIdParams,
        response: { 200: okEnvelope(jobViewSchema), ...errorResponses },
      },
    },
    async (request) => ({
      success: true as const,
      data: await findJob(lookup, request.params.jobId),
    }),
  );

  app.post(
    '/api/jobs/:jobId/cancel',
    {
      schema: {
        params: jobIdParams,
        response: { 202: okEnvelope(jobViewSchema), ...errorResponses },
      },
    },
    async (request, reply) => {
      const requestedBy = request.admin?.requestedBy ?? 'unknown';
      const job = await cancelJob(lookup, request.params.jobId, requestedBy);
      return reply.code(202).send({ success: true, data: job, message: 'cancellation requested' });
    },
  );
};
