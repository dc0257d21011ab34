import type { FastifyReply } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { BODY_PARSING, documented } from '../route-docs.js';
import { jobIdParams, jobViewSchema, okEnvelope } from '../schemas.js';
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
      // Documents the answer (/docs); the 200 body comes serialized from the service.
      schema: documented(
        {
          operationId: 'getJob',
          summary: 'Poll a job',
          description:
            'The job’s `state` (queued, running, completed, failed), `progress`, `result` (a backup’s manifest, a verify’s checks, …), `error` with its stable code, who asked and when. A finished job’s answer is reused for a few seconds.',
          access: 'admin',
          errors: ['JOB_NOT_FOUND', 'QUEUE_UNAVAILABLE'],
        },
        { params: jobIdParams, response: { 200: okEnvelope(jobViewSchema) } },
      ),
    },
    async (request, reply) => sendJsonText(reply, await jobs.pollBody(request.params.jobId)),
  );

  app.post(
    '/api/jobs/:jobId/cancel',
    {
      schema: documented(
        {
          operationId: 'cancelJob',
          summary: 'Cancel a job',
          description:
            'Asks for the job to stop: a running job is aborted by its worker (a restore before its swap leaves the target untouched); a queued one fails when a worker takes it. Either ends `failed` with JOB_CANCELLED and is not retried. Answers the job with `cancelRequestedBy` set; a finished job is JOB_NOT_CANCELLABLE.',
          access: 'admin',
          errors: ['JOB_NOT_FOUND', 'JOB_NOT_CANCELLABLE', 'QUEUE_UNAVAILABLE', ...BODY_PARSING],
        },
        { params: jobIdParams, response: { 202: okEnvelope(jobViewSchema) } },
      ),
    },
    async (request, reply) => {
      const requestedBy = request.admin?.requestedBy ?? 'unknown';
      const job = await jobs.cancel(request.params.jobId, requestedBy);
      return reply.code(202).send({ success: true, data: job, message: 'cancellation requested' });
    },
  );
};
