import { changeSchedule, listSchedules } from '@pgkeep/queue';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { documented } from '../route-docs.js';
import { okEnvelope, scheduleChangeBody, scheduleParams, scheduleViewSchema } from '../schemas.js';
import type { ApiServices } from '../services/api-services.js';

export const scheduleRoutes: FastifyPluginAsyncZod<{ services: ApiServices }> = async (
  app,
  { services },
) => {
  app.addHook('onRequest', app.requireAdmin);

  app.get(
    '/api/schedules',
    {
      schema: documented(
        {
          operationId: 'listSchedules',
          summary: 'List schedules',
          description:
            'The schedules of backups, clean-up and verification: each one’s cron pattern, time zone, whether it is on, its next run, and whether it comes from the configuration or was changed at run time (by whom, when).',
          access: 'admin',
          errors: ['QUEUE_UNAVAILABLE'],
        },
        { response: { 200: okEnvelope(z.array(scheduleViewSchema)) } },
      ),
    },
    async () => {
      const schedules = await listSchedules(services.queues, services.redis, services.config);
      return { success: true as const, data: schedules, count: schedules.length };
    },
  );

  app.put(
    '/api/schedules/:name',
    {
      schema: documented(
        {
          operationId: 'changeSchedule',
          summary: 'Change a schedule',
          description:
            'Changes a schedule’s cron pattern, time zone or switch at run time, on every worker; it stays changed across restarts until changed again. Answers the schedule as it now is.',
          access: 'admin',
          errors: ['QUEUE_UNAVAILABLE'],
        },
        {
          params: scheduleParams,
          body: scheduleChangeBody,
          response: { 200: okEnvelope(scheduleViewSchema) },
        },
      ),
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
