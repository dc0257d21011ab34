import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { AppError } from '@pgkeep/core';
import type { FastifyBaseLogger, FastifyInstance, RawServerDefault } from 'fastify';
import type { FastifyPluginAsyncZod, ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { quietLogLevel } from '../plugins/app/request-log.js';
import { BODY_PARSING, documented, type HeaderDoc, type RouteDoc } from '../route-docs.js';
import {
  backupIdParams,
  cleanQuery,
  createBackupBody,
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
const artifactBytes = (description: string) => ({
  description,
  content: {
    'application/octet-stream': {
      schema: z
        .custom<Readable>((value) => value instanceof Readable)
        .meta({
          type: 'string',
          format: 'binary',
        }),
    },
  },
});

const DOWNLOAD_REQUEST_HEADERS = {
  range: {
    type: 'string',
    description:
      'One byte range, `bytes=<first>-<last>`, `bytes=<first>-` or `bytes=-<suffix length>` (several ranges, or an unparsable header, get the whole file with 200).',
    example: 'bytes=0-1023',
  },
} satisfies Record<string, HeaderDoc>;

const checksumHeaders: Record<string, HeaderDoc> = {
  etag: { type: 'string', description: 'The artifact’s sha256 in hex, quoted.' },
  'x-checksum-sha256': { type: 'string', description: 'The artifact’s sha256 in hex.' },
  'repr-digest': {
    type: 'string',
    description: 'RFC 9530: `sha-256=:<base64 of the sha256>:`, of the whole artifact.',
  },
};

const DOWNLOAD_RESPONSE_HEADERS = {
  200: {
    'content-length': { type: 'integer', description: 'The artifact’s size in bytes.' },
    'accept-ranges': { type: 'string', description: 'Always `bytes`.' },
    'content-disposition': {
      type: 'string',
      description: 'attachment; filename="<the manifest’s filename>"',
    },
    ...checksumHeaders,
    'x-backup-copy': { type: 'string', description: 'The destination the bytes were read from.' },
  },
  206: {
    'content-range': {
      type: 'string',
      description: '`bytes <first>-<last>/<size>`: the part sent, of the whole artifact.',
    },
    'content-length': { type: 'integer', description: 'The length of the part sent.' },
    'accept-ranges': { type: 'string', description: 'Always `bytes`.' },
    ...checksumHeaders,
    'x-backup-copy': { type: 'string', description: 'The destination the bytes were read from.' },
  },
  416: {
    'content-range': {
      type: 'string',
      description: '`bytes */<size>`: the artifact’s size, for a range outside it.',
    },
  },
} satisfies Record<number, Record<string, HeaderDoc>>;

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
      schema: documented(
        {
          operationId: 'getHealth',
          summary: 'Health probe',
          description:
            'No token. Whether each dependency passes, the names of those that fail and pg_dump’s version; no error text or other detail (see /api/backup/health/detail). Answers are reused for HEALTH_CACHE_MS. 503 (same body, `success: false`) when a check fails: the status a load balancer reads.',
          access: 'public',
          errors: [],
        },
        {
          response: {
            200: okEnvelope(healthSchema),
            503: okEnvelope(healthSchema)
              .extend({ success: z.literal(false) })
              .describe('A check fails: the same body, with success false'),
          },
        },
      ),
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
        schema: documented(
          {
            operationId: 'getHealthDetail',
            summary: 'Health in detail',
            description:
              'Each dependency with what was found (errors, versions, live workers), the newest backup and its last verify, free space, each destination, target and point-in-time recovery server. Always 200 when answered: `status` says ok, warning or error, and `reasons` why.',
            access: 'admin',
            errors: [],
          },
          { response: { 200: okEnvelope(healthDetailSchema) } },
        ),
      },
      async () => ({ success: true as const, data: await checkHealthDetail(services) }),
    );

    registerBackupRoutes(
      adminApp,
      '/api/backup',
      () => forTarget(services),
      undefined,
      backupIdParams,
      { operationId: (name) => name, scope: 'the target `default` (or the only target there is)' },
    );
  });
};

/** How one set of backup routes is named in the OpenAPI document. */
export interface BackupRouteNaming {
  /** From the panel's route's operationId (`createBackup`) to this set's. */
  operationId: (name: string) => string;
  /** The target the routes act on, in words. */
  scope: string;
}

/** What resolving the route's target can answer: no such target, its server unreachable. */
const TARGET_SCOPE = ['TARGET_NOT_FOUND', 'DATABASE_UNAVAILABLE'] as const;

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
  naming: BackupRouteNaming,
): void {
  const doc = (
    name: string,
    summary: string,
    description: string,
    errors: RouteDoc['errors'],
    extra: Partial<RouteDoc> = {},
  ): RouteDoc => ({
    operationId: naming.operationId(name),
    summary,
    description: `${description} Acts on ${naming.scope}.`,
    access: 'admin',
    errors: [...TARGET_SCOPE, ...errors],
    ...extra,
  });
  app.post(
    base,
    {
      schema: documented(
        doc(
          'createBackup',
          'Back up now',
          'Queues a backup of the whole database, or of the named tables (matched exactly, mixed case included; an unknown table is refused here with TABLE_NOT_FOUND). The format, compression and table set default to the target’s settings. No body at all means a full backup with the defaults.',
          ['INVALID_TABLE_NAME', 'TABLE_NOT_FOUND', 'QUEUE_UNAVAILABLE'],
        ),
        {
          ...(listParams ? { params: listParams } : {}),
          body: createBackupBody,
          response: { 202: jobAccepted },
        },
      ),
    },
    async (request, reply) => {
      const jobId = await enqueueBackup(await scope(request), admin(request), request.body ?? {});
      return reply.code(202).send({ success: true, data: { jobId }, message: 'backup queued' });
    },
  );

  app.get(
    base,
    {
      schema: documented(
        doc(
          'listBackups',
          'List backups',
          'Every backup’s manifest, newest first; `count` is their number. A backup exists exactly when its manifest does.',
          [],
        ),
        {
          ...(listParams ? { params: listParams } : {}),
          response: { 200: okEnvelope(z.array(manifestSchema)) },
        },
      ),
    },
    async (request) => {
      const manifests = await listBackups(await scope(request));
      return { success: true as const, data: manifests, count: manifests.length };
    },
  );

  app.get(
    `${base}/stats`,
    {
      schema: documented(
        doc(
          'getBackupStats',
          'Backup statistics',
          'How many backups, their total size, the oldest and the newest, how many are encrypted, and what each destination holds.',
          [],
        ),
        {
          ...(listParams ? { params: listParams } : {}),
          response: { 200: okEnvelope(statsSchema) },
        },
      ),
    },
    async (request) => ({
      success: true as const,
      data: await backupStats(await scope(request)),
    }),
  );

  app.get(
    `${base}/:id`,
    {
      schema: documented(
        doc('getBackup', 'One backup', 'The backup’s manifest.', ['BACKUP_NOT_FOUND']),
        { params: idParams, response: { 200: okEnvelope(manifestSchema) } },
      ),
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
      schema: documented(
        doc(
          'downloadBackup',
          'Download a backup',
          'The artifact exactly as stored (still encrypted, if it is), from the first copy that is there at its full size, local first. One byte range may be asked for with `Range` (206); a range outside the file is 416 with `Content-Range: bytes */<size>`. The sha256 to check the bytes by comes in `X-Checksum-Sha256`, `Repr-Digest` and the `ETag`.',
          ['BACKUP_NOT_FOUND', 'RANGE_NOT_SATISFIABLE', 'ARTIFACT_MISSING'],
          { requestHeaders: DOWNLOAD_REQUEST_HEADERS, responseHeaders: DOWNLOAD_RESPONSE_HEADERS },
        ),
        {
          params: idParams,
          response: {
            200: artifactBytes('the artifact, exactly as stored'),
            206: artifactBytes('the requested range of the artifact'),
          },
        },
      ),
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
      schema: documented(
        doc(
          'restoreBackup',
          'Restore a backup',
          'Queues a restore of the backup into its database, or into `target` (a test restore beside it). `confirm` must equal the database that will be replaced, else CONFIRMATION_REQUIRED. The worker checks the checksum, restores into a temporary database, compares row counts, then swaps it in; the replaced database is kept as `<db>_pre_restore_<id>`. Refused with RESTORE_DISABLED when restores are off.',
          [
            'RESTORE_DISABLED',
            'BACKUP_NOT_FOUND',
            'INVALID_DATABASE_NAME',
            'CONFIRMATION_REQUIRED',
            'PG_RESTORE_TOO_OLD',
            'QUEUE_UNAVAILABLE',
          ],
          { requiredBody: ['confirm'] },
        ),
        { params: idParams, body: restoreBody, response: { 202: jobAccepted } },
      ),
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
      schema: documented(
        doc(
          'verifyBackup',
          'Verify a backup',
          'Queues a verify: the checksum and a full read of the archive, and with `restore: true` a scratch restore whose row counts are compared with the manifest. A backup found bad is a failed job with VERIFY_FAILED and every check in `error.details`.',
          ['BACKUP_NOT_FOUND', 'QUEUE_UNAVAILABLE'],
        ),
        { params: idParams, body: verifyBody, response: { 202: jobAccepted } },
      ),
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
    {
      schema: documented(
        doc(
          'deleteBackup',
          'Delete a backup',
          'Queues the removal of the backup: its artifact and manifest, in every destination.',
          ['BACKUP_NOT_FOUND', 'QUEUE_UNAVAILABLE', ...BODY_PARSING],
        ),
        { params: idParams, response: { 202: jobAccepted } },
      ),
    },
    async (request, reply) => {
      const jobId = await enqueueDelete(await scope(request), admin(request), request.params.id);
      return reply.code(202).send({ success: true, data: { jobId }, message: 'delete queued' });
    },
  );

  app.post(
    `${base}/clean`,
    {
      schema: documented(
        doc(
          'cleanBackups',
          'Apply retention',
          'Queues a clean-up: `keepLast=N` keeps the N newest backups, or `policy=gfs` with any of `days`, `weeks`, `months`, `years` (the rest from the configuration). `dryRun=true` deletes nothing; the job’s result says what it would.',
          ['QUEUE_UNAVAILABLE', ...BODY_PARSING],
        ),
        {
          ...(listParams ? { params: listParams } : {}),
          querystring: cleanQuery,
          response: { 202: jobAccepted },
        },
      ),
    },
    async (request, reply) => {
      const jobId = await enqueueCleanup(await scope(request), admin(request), request.query);
      return reply.code(202).send({ success: true, data: { jobId }, message: 'cleanup queued' });
    },
  );
}
