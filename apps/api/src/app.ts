import type { FastifyInstance } from 'fastify';
import {
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import adminSession from './plugins/app/admin-session.js';
import authFailures from './plugins/app/auth-failures.js';
import authorize from './plugins/app/authorize.js';
import errorHandler from './plugins/app/error-handler.js';
import requestLog from './plugins/app/request-log.js';
import bullBoard from './plugins/external/bull-board.js';
import cookie from './plugins/external/cookie.js';
import jwt from './plugins/external/jwt.js';
import rateLimit from './plugins/external/rate-limit.js';
import swagger from './plugins/external/swagger.js';
import { adminRoutes } from './routes/admin-routes.js';
import { backupRoutes } from './routes/backup-routes.js';
import { jobRoutes } from './routes/job-routes.js';
import { metricsRoutes } from './routes/metrics-routes.js';
import { pitrRoutes } from './routes/pitr-routes.js';
import { scheduleRoutes } from './routes/schedule-routes.js';
import { targetRoutes } from './routes/target-routes.js';
import type { ApiServices } from './services/api-services.js';

/** 1 MiB: no request of this API needs more; larger bodies are refused with 413. */
export const BODY_LIMIT = 1024 * 1024;

/** The API as a plugin: it never listens (server.ts does), so tests use `app.inject()`. */
export async function app(fastify: FastifyInstance, { services }: { services: ApiServices }) {
  // JSON only: a text/plain body is refused with 415 instead of reaching validation as a string.
  fastify.removeContentTypeParser(['text/plain']);
  fastify.setValidatorCompiler(validatorCompiler);
  fastify.setSerializerCompiler(serializerCompiler);
  const typed = fastify.withTypeProvider<ZodTypeProvider>();
  await typed.register(requestLog);
  await typed.register(errorHandler);
  // Before any route: it collects the routes' schemas as they are added (/docs).
  await typed.register(swagger);
  await typed.register(jwt, { config: services.config });
  await typed.register(rateLimit);
  await typed.register(authFailures, { config: services.config });
  await typed.register(authorize, { config: services.config });
  await typed.register(cookie);
  await typed.register(adminSession, { config: services.config });
  await typed.register(backupRoutes, { services });
  await typed.register(targetRoutes, { services });
  await typed.register(pitrRoutes, { services });
  await typed.register(jobRoutes, { services });
  await typed.register(metricsRoutes, { services });
  await typed.register(scheduleRoutes, { services });
  await typed.register(adminRoutes);
  await typed.register(bullBoard, { queues: services.queues });
}
