import type { FastifyPluginAsyncZod, ZodTypeProvider } from 'fastify-type-provider-zod';
import {
  baseBackupListSchema,
  createBaseBackupBody,
  errorResponses,
  jobAccepted,
  okEnvelope,
  pitrCleanBody,
  pitrRestoreBody,
  pitrViewSchema,
  targetParams,
} from '../schemas.js';
import type { ApiServices } from '../services/api-services.js';
import {
  enqueueBaseBackup,
  enqueuePitrCleanup,
  enqueuePitrRestore,
  getPitr,
  listBaseBackups,
} from '../services/pitr-service.js';
import { forTarget } from '../services/target-scope.js';
import { admin } from './backup-routes.js';

/**
 * Point-in-time recovery of a target's server: its recoverable window and status, its base
 * backups, a base backup now, and its archive's clean-up. A server without `pitr` in the
 * targets file answers 404 PITR_NOT_ENABLED.
 */
export const pitrRoutes: FastifyPluginAsyncZod<{ services: ApiServices }> = async (
  app,
  { services },
) => {
  await app.register(async (scope) => {
    const adminApp = scope.withTypeProvider<ZodTypeProvider>();
    adminApp.addHook('onRequest', app.requireAdmin);
    const target = (request: { params: { target: string } }) =>
      forTarget(services, request.params.target);

    adminApp.get(
      '/api/targets/:target/pitr',
      {
        schema: {
          params: targetParams,
          response: { 200: okEnvelope(pitrViewSchema), ...errorResponses },
        },
      },
      async (request) => ({ success: true as const, data: await getPitr(await target(request)) }),
    );

    adminApp.get(
      '/api/targets/:target/pitr/basebackups',
      {
        schema: {
          params: targetParams,
          response: { 200: okEnvelope(baseBackupListSchema), ...errorResponses },
        },
      },
      async (request) => {
        const baseBackups = await listBaseBackups(await target(request));
        return { success: true as const, data: { baseBackups }, count: baseBackups.length };
      },
    );

    adminApp.post(
      '/api/targets/:target/pitr/basebackups',
      {
        schema: {
          params: targetParams,
          body: createBaseBackupBody,
          response: { 202: jobAccepted, ...errorResponses },
        },
      },
      async (request, reply) => {
        const jobId = await enqueueBaseBackup(
          await target(request),
          admin(request),
          request.body ?? {},
        );
        return reply
          .code(202)
          .send({ success: true, data: { jobId }, message: 'base backup queued' });
      },
    );

    adminApp.post(
      '/api/targets/:target/restore',
      {
        schema: {
          params: targetParams,
          body: pitrRestoreBody,
          response: { 202: jobAccepted, ...errorResponses },
        },
      },
      async (request, reply) => {
        const jobId = await enqueuePitrRestore(await target(request), admin(request), request.body);
        return reply
          .code(202)
          .send({ success: true, data: { jobId }, message: 'point-in-time restore queued' });
      },
    );

    adminApp.post(
      '/api/targets/:target/pitr/clean',
      {
        schema: {
          params: targetParams,
          body: pitrCleanBody,
          response: { 202: jobAccepted, ...errorResponses },
        },
      },
      async (request, reply) => {
        const jobId = await enqueuePitrCleanup(
          await target(request),
          admin(request),
          request.body ?? {},
        );
        return reply
          .code(202)
          .send({ success: true, data: { jobId }, message: 'archive clean-up queued' });
      },
    );
  });
};
