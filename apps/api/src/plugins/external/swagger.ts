import { readFileSync } from 'node:fs';
import fastifySwagger, {
  type SwaggerTransform,
  type SwaggerTransformObject,
} from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import { type ErrorCode, errorStatus } from '@pgkeep/core';
import fp from 'fastify-plugin';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import type { OpenAPIV3_1 } from 'openapi-types';
import { apiExamples, exampleKey } from '../../api-examples.js';
import { type ResolvedRouteDoc, ROUTE_DOC_KEY } from '../../route-docs.js';
import { ADMIN_COOKIE } from '../app/admin-session.js';

export const DOCS_PATH = '/docs';

const { version } = JSON.parse(
  readFileSync(new URL('../../../package.json', import.meta.url), 'utf8'),
) as { version: string };

const tagOf = (url: string) =>
  /^\/api\/targets\/:target\/(pitr(\/|$)|restore$)/.test(url)
    ? 'pitr'
    : url.startsWith('/api/backup')
      ? 'backups'
      : url.startsWith('/api/jobs')
        ? 'jobs'
        : url.startsWith('/api/schedules')
          ? 'schedules'
          : url.startsWith('/api/targets')
            ? 'targets'
            : url.startsWith('/admin')
              ? 'operators'
              : 'other';

const ERROR_ENVELOPE_REF = '#/components/schemas/ErrorEnvelope';

/** The codes that come with a status: the route's own, else every one of core's table. */
const codesOf = (
  status: string,
  codes: readonly ErrorCode[] = Object.keys(errorStatus) as ErrorCode[],
) => codes.filter((code) => String(errorStatus[code]) === status);

const errorDescription = (status: string, codes?: readonly ErrorCode[]) =>
  `Error envelope; error.code: ${codesOf(status, codes).join(', ') || 'ROUTE_NOT_FOUND'}`;

const successDescriptions: Record<string, string> = {
  200: 'OK',
  202: 'Accepted: a job was queued; poll GET /api/jobs/{jobId}',
};

type JsonObject = Record<string, unknown>;

/**
 * The zod schemas become JSON Schema; then what every route would otherwise repeat: a tag from
 * its path, a description per status (an error's lists the codes the route can answer with,
 * from its RouteDoc), the body fields it requires, its request and response headers, and bearer
 * auth on every route that can answer 401 (the health check cannot, so it stays open; a route
 * that takes its token another way says `security: []`).
 */
const transform: SwaggerTransform = (input) => {
  const { schema: transformed = {}, url } = jsonSchemaTransform(input);
  if (transformed.hide) return { schema: transformed, url };
  const { [ROUTE_DOC_KEY]: rawDoc, ...schema } = transformed as JsonObject;
  const doc = rawDoc as ResolvedRouteDoc | undefined;
  const responses = (schema.response ?? {}) as Record<string, JsonObject>;
  for (const [status, response] of Object.entries(responses)) {
    if (response.description !== undefined) continue;
    const description =
      response.$ref === ERROR_ENVELOPE_REF
        ? errorDescription(status, doc?.allErrors)
        : successDescriptions[status];
    if (description) response.description = description;
  }
  const body = schema.body as JsonObject | undefined;
  if (doc?.requiredBody && body) {
    body.required = [...new Set([...((body.required as string[]) ?? []), ...doc.requiredBody])];
  }
  if (doc?.requestHeaders) {
    // As a JSON Schema object: fastify-swagger makes each property a header parameter.
    schema.headers = { type: 'object', properties: doc.requestHeaders };
  }
  for (const [status, headers] of Object.entries(doc?.responseHeaders ?? {})) {
    const response = responses[status];
    if (response) response.headers = { ...(response.headers as object), ...headers };
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

type Operation = OpenAPIV3_1.OperationObject;
type Media = OpenAPIV3_1.MediaTypeObject;

/**
 * The examples recorded from the real API (docs/api-examples.json), named by their titles: the
 * request bodies on the request body, the answers on the response of their status (JSON and
 * text as content examples, the download's headers as header examples; bytes have none).
 */
function withExamples(operation: Operation): Operation {
  const examples = apiExamples.operations[operation.operationId ?? ''] ?? [];
  const requestBody = operation.requestBody as OpenAPIV3_1.RequestBodyObject | undefined;
  const responses = (operation.responses ?? {}) as Record<string, OpenAPIV3_1.ResponseObject>;
  const withExample = (
    media: Media | undefined,
    title: string,
    value: unknown,
  ): Media | undefined =>
    media && {
      ...media,
      examples: { ...media.examples, [exampleKey(title)]: { summary: title, value } },
    };
  let json = requestBody?.content?.['application/json'];
  const byStatus: Record<string, OpenAPIV3_1.ResponseObject> = { ...responses };
  for (const { title, request, response } of examples) {
    if (request.body !== undefined) json = withExample(json, title, request.body);
    const documented = byStatus[String(response.status)];
    if (!documented) continue;
    const headers = Object.fromEntries(
      Object.entries(documented.headers ?? {}).map(([name, header]) => [
        name,
        {
          ...header,
          example: (header as { example?: unknown }).example ?? response.headers?.[name],
        },
      ]),
    );
    const content =
      response.body === null
        ? documented.content
        : Object.fromEntries(
            Object.entries(documented.content ?? {}).map(([type, media]) => [
              type,
              withExample(media, title, response.body) as Media,
            ]),
          );
    byStatus[String(response.status)] = {
      ...documented,
      ...(documented.headers ? { headers } : {}),
      ...(content ? { content } : {}),
    };
  }
  return {
    ...operation,
    ...(requestBody && json
      ? {
          requestBody: {
            ...requestBody,
            content: { ...requestBody.content, 'application/json': json },
          },
        }
      : {}),
    responses: byStatus,
  };
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'] as const;

/**
 * Every operation with its examples, and only the named schemas a route refers to (zod's
 * registry also holds unused input twins).
 */
const transformObject: SwaggerTransformObject = (document) => {
  const openapi = jsonSchemaTransformObject(document) as OpenAPIV3_1.Document;
  const paths = Object.fromEntries(
    Object.entries(openapi.paths ?? {}).map(([path, item]) => {
      const withOperations: Record<string, unknown> = { ...item };
      for (const method of METHODS) {
        const operation = item?.[method] as Operation | undefined;
        if (operation) withOperations[method] = withExamples(operation);
      }
      return [path, withOperations];
    }),
  );
  const used = JSON.stringify(paths);
  const schemas = Object.entries(openapi.components?.schemas ?? {}).filter(([name]) =>
    used.includes(`"#/components/schemas/${name}"`),
  );
  return {
    ...openapi,
    paths,
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
          {
            name: 'targets',
            description:
              'Targets, and the backup routes of each under /api/targets/{target}/backups',
          },
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
