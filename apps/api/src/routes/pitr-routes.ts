import type { FastifyPluginAsyncZod, ZodTypeProvider } from 'fastify-type-provider-zod';
import { documented } from '../route-docs.js';
import {
  baseBackupListSchema,
  createBaseBackupBody,
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

/** What resolving the route's target and its server's PITR can answer. */
const PITR_SCOPE = ['TARGET_NOT_FOUND', 'DATABASE_UNAVAILABLE', 'PITR_NOT_ENABLED'] as const;

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
        schema: documented(
          {
            operationId: 'getPitr',
            summary: 'Point-in-time recovery overview',
            description:
              'The recoverable window of the target’s server (first base backup’s end to the last archived WAL, minus gaps), its status and reasons, the WAL receiver’s status, the PITR settings and schedules.',
            access: 'admin',
            errors: [...PITR_SCOPE, 'PITR_UNAVAILABLE', 'QUEUE_UNAVAILABLE'],
          },
          { params: targetParams, response: { 200: okEnvelope(pitrViewSchema) } },
        ),
      },
      async (request) => ({ success: true as const, data: await getPitr(await target(request)) }),
    );

    adminApp.get(
      '/api/targets/:target/pitr/basebackups',
      {
        schema: documented(
          {
            operationId: 'listBaseBackups',
            summary: 'List base backups',
            description:
              'The base backups in the archive’s catalog of the target’s server, newest first, each its manifest as stored; `count` is their number.',
            access: 'admin',
            errors: [...PITR_SCOPE, 'PITR_UNAVAILABLE'],
          },
          { params: targetParams, response: { 200: okEnvelope(baseBackupListSchema) } },
        ),
      },
      async (request) => {
        const baseBackups = await listBaseBackups(await target(request));
        return { success: true as const, data: { baseBackups }, count: baseBackups.length };
      },
    );

    adminApp.post(
      '/api/targets/:target/pitr/basebackups',
      {
        schema: documented(
          {
            operationId: 'createBaseBackup',
            summary: 'Base backup now',
            description:
              'Queues a pg_basebackup of the target’s server into its WAL archive, with the server’s checkpoint setting unless `checkpoint` says otherwise (`fast` starts at once; `spread` may wait minutes), checked with pg_verifybackup unless `verify: false`.',
            access: 'admin',
            errors: [...PITR_SCOPE, 'QUEUE_UNAVAILABLE'],
          },
          { params: targetParams, body: createBaseBackupBody, response: { 202: jobAccepted } },
        ),
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
        schema: documented(
          {
            operationId: 'pitrRestore',
            summary: 'Point-in-time restore',
            description:
              'Queues a restore of the target’s database as it was at `pointInTime` (RFC 3339 with an offset, or `latest`), into it or into `target`. `confirm` must equal the database that will be replaced, else CONFIRMATION_REQUIRED. A time after now, outside the recoverable window or in a gap of the archive is refused (422, `details` has the window).',
            access: 'admin',
            errors: [
              ...PITR_SCOPE,
              'RESTORE_DISABLED',
              'INVALID_DATABASE_NAME',
              'CONFIRMATION_REQUIRED',
              'PITR_TIME_IN_FUTURE',
              'PITR_TIME_OUTSIDE_WINDOW',
              'PITR_TIME_IN_GAP',
              'PITR_UNAVAILABLE',
              'QUEUE_UNAVAILABLE',
            ],
            requiredBody: ['confirm'],
          },
          { params: targetParams, body: pitrRestoreBody, response: { 202: jobAccepted } },
        ),
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
        schema: documented(
          {
            operationId: 'cleanPitrArchive',
            summary: 'Apply the archive’s retention',
            description:
              'Queues the server’s retention policy applied to its WAL archive: base backups beyond it go, with the WAL only they need. `dryRun: true` deletes nothing; the job’s result says what it would.',
            access: 'admin',
            errors: [...PITR_SCOPE, 'QUEUE_UNAVAILABLE'],
          },
          { params: targetParams, body: pitrCleanBody, response: { 202: jobAccepted } },
        ),
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
