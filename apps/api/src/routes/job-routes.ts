import type { FastifyReply } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { errorResponses, jobIdParams, jobViewSchema, okEnvelope } from '../schemas.js';
import type { ApiServices } from '../services/api-services.js';
import { JobPollService, JSON_CONTENT_TYPE } from '../services/job-poll-service.js';

/** Sends JSON that is already text, as it is (the route's schema types only objects). */
function sendJsonText(reply: FastifyReply, body: string): FastifyReply {
  return reply.type(JSON_CONTENT_TYPE).send(body);
}

export const jobRoutes: FastifyPluginAsyncZod<{ services: ApiServices }> = async (
  app,
  { services },
) => {
  const jobs = new JobPollService({
    queues: services.queues,
    redis: services.redis,
    prefix: services.config.REDIS_PREFIX,
  });
  app.addHook('onRequest', app.requireAdmin);
  app.get(
    '/api/jobs/:jobId',
    {
      schema: {
        params: jobIdParams,
        // Documents the answer (/docs); the 200 body comes serialized from the service.
        response: { 200: okEnvelope(jobViewSchema), ...errorResponses },
      },
    },
    async (request, reply) => sendJsonText(reply, await jobs.pollBody(request.params.jobId)),
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
      const job = await jobs.cancel(request.params.jobId, requestedBy);
      return reply.code(202).send({ success: true, data: job, message: 'cancellation requested' });
    },
  );
};
