import { changeSchedule, listSchedules } from '@pgkeep/queue';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import {
  errorResponses,
  okEnvelope,
  scheduleChangeBody,
  scheduleParams,
  scheduleViewSchema,
} from '../schemas.js';
import type { ApiServices } from '../services/api-services.js';

export const scheduleRoutes: FastifyPluginAsyncZod<{ services: ApiServices }> = async (
  app,
  { services },
) => {
  app.addHook('onRequest', app.requireAdmin);

  app.get(
    '/api/schedules',
    { schema: { response: { 200: okEnvelope(z.array(scheduleViewSchema)), ...errorResponses } } },
    async () => {
      const schedules = await listSchedules(services.queues, services.redis, services.config);
      return { success: true as const, data: schedules, count: schedules.length };
    },
  );

  app.put(
    '/api/schedules/:name',
    {
      schema: {
        params: scheduleParams,
        body: scheduleChangeBody,
        response: { 200: okEnvelope(scheduleViewSchema), ...errorResponses },
      },
    },
    async (request) => {
      const schedule = await changeSchedule(
        services.queues,
        services.redis,
        services.config,
        request.params.name,
        request.body,
        request.admin?.requestedBy ?? 'unknown',
      );
      return { success: true as const, data: schedule, message: 'schedule changed' };
    },
  );
};
