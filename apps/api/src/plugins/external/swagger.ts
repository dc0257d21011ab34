import { readFileSync } from 'node:fs';
import fastifySwagger, {
  type SwaggerTransform,
  type SwaggerTransformObject,
} from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import { errorStatus } from '@pgkeep/core';
import fp from 'fastify-plugin';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import type { OpenAPIV3_1 } from 'openapi-types';
import { ADMIN_COOKIE } from '../app/admin-session.js';

export const DOCS_PATH = '/docs';

const { version } = JSON.parse(
  readFileSync(new URL('../../../package.json', import.meta.url), 'utf8'),
) as { version: string };

const tagOf = (url: string) =>
  /^\/api\/targets\/:target\/pitr(\/|$)/.test(url)
    ? 'pitr'
    : url.startsWith('/api/backup')
      ? 'backups'
      : url.startsWith('/api/jobs')
        ? 'jobs'
        : url.startsWith('/api/schedules')
          ? 'schedules'
          : url.startsWith('/admin')
            ? 'operators'
            : 'other';

const ERROR_ENVELOPE_REF = '#/components/schemas/ErrorEnvelope';

/** An error response's description: the codes that come with its status (core's one table). */
const errorDescription = (status: string) => {
  const codes = Object.entries(errorStatus)
    .filter(([, code]) => String(code) === status)
    .map(([name]) => name);
  return `Error envelope; error.code: ${codes.join(', ') || 'ROUTE_NOT_FOUND'}`;
};

const successDescriptions: Record<string, string> = {
  200: 'OK',
  202: 'Accepted: a job was queued; poll GET /api/jobs/{jobId}',
};

/**
 * The zod schemas become JSON Schema; then what every route would otherwise repeat: a tag from
 * its path, a description per status (an error's lists its codes), and bearer auth on every
 * route that can answer 401 (the health check cannot, so it stays open; a route that takes its
 * token another way says `security: []`).
 */
const transform: SwaggerTransform = (input) => {
  const { schema = {}, url } = jsonSchemaTransform(input);
  if (schema.hide) return { schema, url };
  const responses = (schema.response ?? {}) as Record<string, Record<string, unknown>>;
  for (const [status, response] of Object.entries(responses)) {
    if (response.description !== undefined) continue;
    const description =
      response.$ref === ERROR_ENVELOPE_REF ? errorDescription(status) : successDescriptions[status];
    if (description) response.description = description;
  }
  const needsToken = schema.security === undefined && '401' in responses;
  return {
    schema: {
      tags: [tagOf(url)],
      ...(needsToken ? { security: [{ bearerAuth: [] }] } : {}),
      ...schema,
    },
    url,
  };
};

/** Only the named schemas a route refers to (zod's registry also holds unused input twins). */
const transformObject: SwaggerTransformObject = (document) => {
  const openapi = jsonSchemaTransformObject(document) as OpenAPIV3_1.Document;
  const used = JSON.stringify(openapi.paths ?? {});
  const schemas = Object.entries(openapi.components?.schemas ?? {}).filter(([name]) =>
    used.includes(`"#/components/schemas/${name}"`),
  );
  return {
    ...openapi,
    components: { ...openapi.components, schemas: Object.fromEntries(schemas) },
  };
};

/**
 * OpenAPI at /docs (Swagger UI) and /docs/json, generated from the routes' zod schemas. Must be
 * registered before any route: it collects them as they are added.
 */
export default fp(
  async (app) => {
    await app.register(fastifySwagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'pgkeep API',
          version,
          description: [
            'PostgreSQL backups and restores as queued jobs. Every answer is',
            '`{ "success": true, "data": …, "message"?: …, "count"?: … }` or the error envelope',
            '`{ "success": false, "error": { "code": …, "message": …, "details"?: … } }`',
            '(schema `ErrorEnvelope`). Admin routes need a JWT with role `SUPER_ADMIN` or',
            'permission `backup:manage` in the Authorization header (`npm run token`).',
            'The operators’ board is at /admin/queues (sign in at /admin/login).',
          ].join(' '),
        },
        tags: [
          { name: 'backups', description: 'Backups, restores, verification and clean-up' },
          { name: 'jobs', description: 'Polling and cancelling queued jobs' },
          {
            name: 'pitr',
            description: 'Point-in-time recovery: the recoverable window, base backups, clean-up',
          },
          { name: 'schedules', description: 'Schedules of backups, clean-up and verification' },
          { name: 'operators', description: 'Signing in to the Bull Board at /admin/queues' },
        ],
        components: {
          securitySchemes: {
            bearerAuth: {
              type: 'http',
              scheme: 'bearer',
              bearerFormat: 'JWT',
              description:
                'Role SUPER_ADMIN or permission backup:manage; never read from a cookie.',
            },
            boardCookie: {
              type: 'apiKey',
              in: 'cookie',
              name: ADMIN_COOKIE,
              description: 'Set by POST /admin/login; opens /admin/queues only.',
            },
          },
        },
      },
      transform,
      transformObject,
    });
    await app.register(fastifySwaggerUi, { routePrefix: DOCS_PATH });
  },
  { name: 'swagger' },
);
