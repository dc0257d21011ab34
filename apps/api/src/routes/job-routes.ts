import { findJob } from '@pgkeep/queue';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { errorResponses, jobIdParams, jobViewSchema, okEnvelope } from '../schemas.js';
import type { ApiServices } from '../services/api-services.js';

export const jobRoutes: FastifyPluginAsyncZod<{ services: ApiServices }> = async (
  app,
  { services },
) => {
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
      data: await findJob(services.queues, request.params.jobId),
    }),
  );
};
