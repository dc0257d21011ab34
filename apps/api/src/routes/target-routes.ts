import { AppError, ConfigError } from '@pgkeep/core';
import { requestReload } from '@pgkeep/queue';
import type { FastifyPluginAsyncZod, ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { BODY_PARSING, documented } from '../route-docs.js';
import { backupIdParams, okEnvelope, targetFailureSchema, targetParams } from '../schemas.js';
import type { ApiServices } from '../services/api-services.js';
import { forTarget } from '../services/target-scope.js';
import { getTarget, listTargets } from '../services/target-service.js';
import { admin, registerBackupRoutes } from './backup-routes.js';

const targetBackupParams = targetParams.extend(backupIdParams.shape);

const targetView = z
  .object({
    name: z.string(),
    server: z.string().nullable(),
    database: z.string().nullable(),
    kind: z.enum(['configured', 'discovered', 'catalog']),
    discoveredBy: z.string().nullable(),
    schedules: z.array(
      z.object({
        name: z.string(),
        enabled: z.boolean(),
        pattern: z.string(),
        timeZone: z.string(),
        nextRunAt: z.string().nullable(),
      }),
    ),
    retention: z.unknown(),
    destinations: z.array(z.string()),
    encryption: z.boolean(),
    restoreEnabled: z.boolean(),
    lastBackup: z
      .object({ id: z.string(), createdAt: z.string(), size: z.number(), ageHours: z.number() })
      .nullable(),
    lastFailure: targetFailureSchema.nullable(),
    health: z.enum(['ok', 'warning', 'error']),
    reasons: z.array(z.string()),
  })
  .meta({ id: 'Target' });

/**
 * Targets: the list (configured, discovered now, and those whose backups outlive their place in
 * the file), one target, a reload of the targets file on every worker, and every backup route
 * per target under `/api/targets/:target/backups`.
 */
export const targetRoutes: FastifyPluginAsyncZod<{ services: ApiServices }> = async (
  app,
  { services },
) => {
  await app.register(async (scope) => {
    const adminApp = scope.withTypeProvider<ZodTypeProvider>();
    adminApp.addHook('onRequest', app.requireAdmin);

    adminApp.get(
      '/api/targets',
      {
        schema: documented(
          {
            operationId: 'listTargets',
            summary: 'List targets',
            description:
              'Every target: those of the targets file, the databases a discovery target finds now, and those whose backups outlive their place in the file; each with its schedules, retention, destinations, last backup, last failure and health.',
            access: 'admin',
            errors: ['DATABASE_UNAVAILABLE'],
          },
          { response: { 200: okEnvelope(z.array(targetView)) } },
        ),
      },
      async () => {
        const targets = await listTargets(services);
        return { success: true as const, data: targets, count: targets.length };
      },
    );

    adminApp.post(
      '/api/targets/reload',
      {
        schema: documented(
          {
            operationId: 'reloadTargets',
            summary: 'Reload the targets file',
            description:
              'This process reads the targets file again (a file that does not parse is refused with VALIDATION_ERROR and its issues), then every worker is asked to; `workers` is how many were asked. Each worker keeps its last good file if it cannot read the new one.',
            access: 'admin',
            errors: [...BODY_PARSING, 'QUEUE_UNAVAILABLE'],
          },
          { response: { 202: okEnvelope(z.object({ workers: z.number().int() })) } },
        ),
      },
      async (request, reply) => {
        // This process first: a file that does not parse is refused here, before any worker
        // is asked (each would refuse it too, and keep its last good file).
        try {
          services.reloadTargets();
        } catch (error) {
          if (error instanceof ConfigError) {
            throw new AppError('VALIDATION_ERROR', error.message, {
              details: { issues: error.issues },
            });
          }
          throw error;
        }
        const workers = await requestReload(
          services.redis,
          services.config.REDIS_PREFIX,
          admin(request).requestedBy,
        );
        return reply.code(202).send({
          success: true,
          data: { workers },
          message: 'every worker reads its targets file again',
        });
      },
    );

    adminApp.get(
      '/api/targets/:target',
      {
        schema: documented(
          {
            operationId: 'getTarget',
            summary: 'One target',
            description:
              'The target by name (a discovered database’s is `<server>/<database>`, sent as `server%2Fdatabase`), as in the list.',
            access: 'admin',
            errors: ['TARGET_NOT_FOUND', 'DATABASE_UNAVAILABLE'],
          },
          { params: targetParams, response: { 200: okEnvelope(targetView) } },
        ),
      },
      async (request) => ({
        success: true as const,
        data: await getTarget(services, request.params.target),
      }),
    );

    registerBackupRoutes(
      adminApp,
      '/api/targets/:target/backups',
      (request: { params: { target: string } }) => forTarget(services, request.params.target),
      targetParams,
      targetBackupParams,
      {
        operationId: (name) => name.replace('Backup', 'TargetBackup'),
        scope: 'the target named in the path',
      },
    );
  });
};
