import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { AppError } from '@pgkeep/core';
import type { FastifyBaseLogger, FastifyInstance, RawServerDefault } from 'fastify';
import type { FastifyPluginAsyncZod, ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { quietLogLevel } from '../plugins/app/request-log.js';
import {
  backupIdParams,
  cleanQuery,
  createBackupBody,
  errorEnvelope,
  errorResponses,
  healthDetailSchema,
  healthSchema,
  jobAccepted,
  manifestSchema,
  okEnvelope,
  restoreBody,
  statsSchema,
  verifyBody,
} from '../schemas.js';
import type { ApiServices, TargetServices } from '../services/api-services.js';
import {
  backupStats,
  enqueueBackup,
  enqueueCleanup,
  enqueueDelete,
  enqueueRestore,
  enqueueVerify,
  getBackup,
  listBackups,
} from '../services/backup-service.js';
import { openDownload } from '../services/download-service.js';
import { checkHealthDetail } from '../services/health-detail-service.js';
import { checkHealth } from '../services/health-service.js';
import { sharedResult } from '../services/shared-result.js';
import { forTarget } from '../services/target-scope.js';

/** A stream: Fastify sends it as it is, without serializing. */
const artifactBytes = z.custom<Readable>((value) => value instanceof Readable);

/** Who asked: set by requireAdmin, the onRequest hook of every admin route. */
export const admin = (request: { admin?: { requestedBy: string } }) => {
  if (!request.admin) throw new Error('route registered without requireAdmin');
  return request.admin;
};

export const backupRoutes: FastifyPluginAsyncZod<{ services: ApiServices }> = async (
  app,
  { services },
) => {
  // One check per HEALTH_CACHE_MS however many probes come: no disk or database work each.
  const publicHealth = sharedResult(services.config.HEALTH_CACHE_MS, () => checkHealth(services));
  app.get(
    '/api/backup/health',
    {
      // Probed every few seconds: a line only when it fails (RequestLogController).
      logLevel: quietLogLevel,
      schema: {
        description:
          'No token. Whether each dependency passes, the names of those that fail and pg_dump’s version; no error text or other detail (see /api/backup/health/detail). Answers are reused for HEALTH_CACHE_MS.',
        response: {
          200: okEnvelope(healthSchema),
          503: okEnvelope(healthSchema).extend({ success: z.literal(false) }),
        },
      },
    },
    async (_request, reply) => {
      const health = await publicHealth();
      return reply
        .code(health.healthy ? 200 : 503)
        .send({ success: health.healthy as true, data: health });
    },
  );

  await app.register(async (scope) => {
    const adminApp = scope.withTypeProvider<ZodTypeProvider>();
    // onRequest: the token is checked before the body is read or validated, so a stranger
    // learns nothing from validation messages.
    adminApp.addHook('onRequest', app.requireAdmin);

    // Always 200 when answered: `status` says ok, warning or error, and `reasons` why. The quick
    // check above is the probe whose status code a load balancer reads.
    adminApp.get(
      '/api/backup/health/detail',
      {
        logLevel: quietLogLevel,
        schema: { response: { 200: okEnvelope(healthDetailSchema), ...errorResponses } },
      },
      async () => ({ success: true as const, data: await checkHealthDetail(services) }),
    );

    registerBackupRoutes(
      adminApp,
      '/api/backup',
      () => forTarget(services),
      undefined,
      backupIdParams,
    );
  });
};

/**
 * The backup routes under `base`, acting on the target `scope` names: the panel's
 * `/api/backup…` (the target `default`) and `/api/targets/:target/backups…` share them.
 */
export function registerBackupRoutes(
  app: FastifyInstance<
    RawServerDefault,
    IncomingMessage,
    ServerResponse,
    FastifyBaseLogger,
    ZodTypeProvider
  >,
  base: string,
  // biome-ignore lint/suspicious/noExplicitAny: the request's params differ by base
  scope: (request: any) => Promise<TargetServices>,
  listParams: z.ZodObject | undefined,
  idParams: typeof backupIdParams,
): void {
  app.post(
    base,
    {
      schema: {
        ...(listParams ? { params: listParams } : {}),
        body: createBackupBody,
        response: { 202: jobAccepted, ...errorResponses },
      },
    },
    async (request, reply) => {
      const jobId = await enqueueBackup(await scope(request), admin(request), request.body ?? {});
      return reply.code(202).send({ success: true, data: { jobId }, message: 'backup queued' });
    },
  );

  app.get(
    base,
    {
      schema: {
        ...(listParams ? { params: listParams } : {}),
        response: { 200: okEnvelope(z.array(manifestSchema)), ...errorResponses },
      },
    },
    async (request) => {
      const manifests = await listBackups(await scope(request));
      return { success: true as const, data: manifests, count: manifests.length };
    },
  );

  app.get(
    `${base}/stats`,
    {
      schema: {
        ...(listParams ? { params: listParams } : {}),
        response: { 200: okEnvelope(statsSchema), ...errorResponses },
      },
    },
    async (request) => ({
      success: true as const,
      data: await backupStats(await scope(request)),
    }),
  );

  app.get(
    `${base}/:id`,
    {
      schema: {
        params: idParams,
        response: { 200: okEnvelope(manifestSchema), ...errorResponses },
      },
    },
    async (request) => ({
      success: true as const,
      data: await getBackup(await scope(request), request.params.id),
    }),
  );

  // The artifact as stored (still encrypted, if it is), with its sha256 to check it by.
  app.get(
    `${base}/:id/download`,
    {
      schema: {
        params: idParams,
        produces: ['application/octet-stream', 'application/json'],
        response: {
          200: artifactBytes.describe('the artifact, exactly as stored'),
          206: artifactBytes.describe('the requested range of the artifact'),
          416: errorEnvelope,
          ...errorResponses,
        },
      },
    },
    async (request, reply) => {
      const target = await scope(request);
      const manifest = await getBackup(target, request.params.id);
      let download: Awaited<ReturnType<typeof openDownload>>;
      try {
        download = await openDownload(target, manifest, request.headers.range);
      } catch (error) {
        if (error instanceof AppError && error.code === 'RANGE_NOT_SATISFIABLE') {
          reply.header('content-range', `bytes */${manifest.size}`);
        }
        throw error;
      }
      const { range } = download;
      reply
        .header('content-type', 'application/octet-stream')
        .header('content-disposition', `attachment; filename="${manifest.filename}"`)
        .header('accept-ranges', 'bytes')
        .header('cache-control', 'no-store')
        .header('etag', `"${manifest.sha256}"`)
        .header('x-checksum-sha256', manifest.sha256)
        .header(
          'repr-digest',
          `sha-256=:${Buffer.from(manifest.sha256, 'hex').toString('base64')}:`,
        )
        .header('x-backup-copy', download.destination);
      if (range) {
        reply
          .code(206)
          .header('content-range', `bytes ${range.start}-${range.end}/${manifest.size}`)
          .header('content-length', range.end - range.start + 1);
      } else {
        reply.code(200).header('content-length', manifest.size);
      }
      return reply.send(download.stream);
    },
  );

  app.post(
    `${base}/:id/restore`,
    {
      schema: {
        params: idParams,
        body: restoreBody,
        response: { 202: jobAccepted, ...errorResponses },
      },
    },
    async (request, reply) => {
      const jobId = await enqueueRestore(
        await scope(request),
        admin(request),
        request.params.id,
        request.body,
      );
      return reply.code(202).send({ success: true, data: { jobId }, message: 'restore queued' });
    },
  );

  app.post(
    `${base}/:id/verify`,
    {
      schema: {
        params: idParams,
        body: verifyBody,
        response: { 202: jobAccepted, ...errorResponses },
      },
    },
    async (request, reply) => {
      const restore = request.body?.restore ?? false;
      const jobId = await enqueueVerify(
        await scope(request),
        admin(request),
        request.params.id,
        restore,
      );
      return reply.code(202).send({ success: true, data: { jobId }, message: 'verify queued' });
    },
  );

  app.delete(
    `${base}/:id`,
    { schema: { params: idParams, response: { 202: jobAccepted, ...errorResponses } } },
    async (request, reply) => {
      const jobId = await enqueueDelete(await scope(request), admin(request), request.params.id);
      return reply.code(202).send({ success: true, data: { jobId }, message: 'delete queued' });
    },
  );

  app.post(
    `${base}/clean`,
    {
      schema: {
        ...(listParams ? { params: listParams } : {}),
        querystring: cleanQuery,
        response: { 202: jobAccepted, ...errorResponses },
      },
    },
    async (request, reply) => {
      const jobId = await enqueueCleanup(await scope(request), admin(request), request.query);
      return reply.code(202).send({ success: true, data: { jobId }, message: 'cleanup queued' });
    },
  );
}
