import { readFile } from 'node:fs/promises';
import { createLogger, errorStatus, loadConfig } from '@pgkeep/core';
import Fastify, { type FastifyInstance, type RouteOptions } from 'fastify';
import type { OpenAPIV3_1 } from 'openapi-types';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { type ApiExample, apiExamples } from '../apps/api/src/api-examples.js';
import { app as apiPlugin } from '../apps/api/src/app.js';
import { type ResolvedRouteDoc, ROUTE_DOC_KEY } from '../apps/api/src/route-docs.js';
import { closeServices, createServices } from '../apps/api/src/server.js';
import type { ApiServices } from '../apps/api/src/services/api-services.js';
import { renderApiReference } from '../scripts/api-reference.js';
import { createTestEnv, type TestEnv } from './support/test-env.js';

/**
 * /docs/json documents every route the API registers, with its method and every status code
 * its schema declares, and the error envelope and bearer auth. Routes are collected with an
 * onRoute hook on the real app, so a route added later without documentation fails here.
 */

interface Operation {
  operationId?: string;
  summary?: string;
  description?: string;
  parameters?: { name: string; in: string; required?: boolean }[];
  requestBody?: {
    content: Record<string, { schema: { required?: string[]; properties?: object } }>;
  };
  responses: Record<
    string,
    {
      description: string;
      headers?: Record<string, { schema: unknown; description?: string }>;
      content?: Record<string, { schema: unknown; examples?: Record<string, unknown> }>;
    }
  >;
  security?: Record<string, string[]>[];
  tags?: string[];
}
interface Spec {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, unknown>; securitySchemes: Record<string, unknown> };
}

let env: TestEnv;
let services: ApiServices;
let server: FastifyInstance;
let spec: Spec;
const routes: RouteOptions[] = [];

beforeAll(async () => {
  env = await createTestEnv('openapi');
  const config = loadConfig({ ...env.env, LOG_LEVEL: 'silent' });
  services = await createServices(config, createLogger('silent', 'pgkeep-api-test'));
  server = Fastify();
  // Before the app: onRoute sees every route the app and its plugins add, in every scope.
  server.addHook('onRoute', (route) => {
    routes.push(route);
  });
  await server.register(apiPlugin, { services });
  await server.ready();
  const response = await server.inject({ url: '/docs/json' });
  expect(response.statusCode, response.body).toBe(200);
  spec = response.json() as Spec;
});

afterAll(async () => {
  await server?.close();
  if (services) await closeServices(services);
  await env?.cleanup();
});

/** Fastify adds a HEAD twin to every GET; the docs, the UI's assets and Bull Board hide. */
const isUndocumented = (route: RouteOptions) =>
  route.method === 'HEAD' ||
  route.url.startsWith('/docs') ||
  route.url === '/admin/queues' ||
  route.url.startsWith('/admin/queues/');

const documented = () => routes.filter((route) => !isUndocumented(route));
const openapiPath = (url: string) => url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
const methodsOf = (route: RouteOptions) =>
  (Array.isArray(route.method) ? route.method : [route.method]).map((m) => m.toLowerCase());
const declaredStatuses = (route: RouteOptions) =>
  Object.keys((route.schema?.response ?? {}) as object).sort();

describe('GET /docs/json', () => {
  it('collected the API’s routes (the hook saw them)', () => {
    const urls = documented().map((route) => route.url);
    expect(urls).toEqual(
      expect.arrayContaining([
        '/api/backup',
        '/api/backup/:id/restore',
        '/api/jobs/:jobId',
        '/api/schedules',
        '/admin/login',
        '/admin/logout',
      ]),
    );
  });

  it('hides only the docs and Bull Board', () => {
    const hidden = routes.filter((route) => (route.schema as { hide?: boolean } | undefined)?.hide);
    for (const route of hidden) expect(isUndocumented(route), route.url).toBe(true);
  });

  it('every route declares its responses', () => {
    const bare = documented()
      .filter((route) => declaredStatuses(route).length === 0)
      .map((route) => `${route.method} ${route.url}`);
    expect(bare, 'routes without a response schema').toEqual([]);
  });

  it('documents every route, with its method and each status code it declares', () => {
    for (const route of documented()) {
      for (const method of methodsOf(route)) {
        const operation = spec.paths[openapiPath(route.url)]?.[method];
        expect(operation, `${method} ${route.url} missing from the spec`).toBeDefined();
        const statuses = declaredStatuses(route);
        if (statuses.length > 0) {
          expect(Object.keys(operation?.responses ?? {}).sort(), `${method} ${route.url}`).toEqual(
            statuses,
          );
        }
      }
    }
  });

  it('documents nothing that is not a route', () => {
    const registered = new Set(
      documented().flatMap((route) =>
        methodsOf(route).map((method) => `${method} ${openapiPath(route.url)}`),
      ),
    );
    const inSpec = Object.entries(spec.paths).flatMap(([path, operations]) =>
      Object.keys(operations).map((method) => `${method} ${path}`),
    );
    expect(inSpec.filter((operation) => !registered.has(operation))).toEqual([]);
  });

  it('documents the error envelope once, and each route’s error responses with its own codes', () => {
    expect(spec.components.schemas.ErrorEnvelope).toMatchObject({
      type: 'object',
      required: ['success', 'error'],
    });
    const operation = spec.paths['/api/backup/{id}/restore']?.post;
    // What a restore can answer: validation, auth, its own refusals, and a queue that is down.
    const expected: Record<string, string[]> = {
      400: [
        'VALIDATION_ERROR',
        'INVALID_BACKUP_ID',
        'CONFIRMATION_REQUIRED',
        'INVALID_DATABASE_NAME',
      ],
      401: ['UNAUTHORIZED'],
      403: ['FORBIDDEN', 'RESTORE_DISABLED'],
      404: ['BACKUP_NOT_FOUND', 'TARGET_NOT_FOUND'],
      409: ['PG_RESTORE_TOO_OLD'],
      413: ['PAYLOAD_TOO_LARGE'],
      415: ['UNSUPPORTED_MEDIA_TYPE'],
      429: ['TOO_MANY_AUTH_FAILURES'],
      500: ['INTERNAL_ERROR'],
      503: ['QUEUE_UNAVAILABLE', 'DATABASE_UNAVAILABLE'],
    };
    const errorStatuses = Object.keys(operation?.responses ?? {}).filter((status) => status >= '4');
    expect(errorStatuses.sort()).toEqual(Object.keys(expected).sort());
    for (const [status, codes] of Object.entries(expected)) {
      const response = operation?.responses[status];
      expect(response?.content?.['application/json']?.schema).toEqual({
        $ref: '#/components/schemas/ErrorEnvelope',
      });
      // The description lists the route's codes of that status, and no other.
      const listed = response?.description.replace(/^Error envelope; error.code: /, '').split(', ');
      expect(listed?.sort(), status).toEqual([...codes].sort());
      for (const code of codes)
        expect(String(errorStatus[code as keyof typeof errorStatus])).toBe(status);
    }
  });

  it('declares bearer auth on every route that can answer 401, and none on the health check', () => {
    expect(spec.components.securitySchemes.bearerAuth).toMatchObject({
      type: 'http',
      scheme: 'bearer',
    });
    for (const [path, operations] of Object.entries(spec.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        if (path.startsWith('/admin/')) {
          // The board's sign-in takes its token in the body.
          expect(operation.security ?? [], `${method} ${path}`).toEqual([]);
        } else if ('401' in operation.responses) {
          expect(operation.security, `${method} ${path}`).toEqual([{ bearerAuth: [] }]);
        }
      }
    }
    expect(spec.paths['/api/backup/health']?.get?.security).toBeUndefined();
  });

  it('serves Swagger UI at /docs', async () => {
    const page = await server.inject({ url: '/docs/' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
  });
});

const operations = () =>
  Object.entries(spec.paths).flatMap(([path, byMethod]) =>
    Object.entries(byMethod).map(([method, operation]) => ({ path, method, operation })),
  );

const operationById = (operationId: string) => {
  const found = operations().find(({ operation }) => operation.operationId === operationId);
  if (!found) throw new Error(`no operation ${operationId}`);
  return found.operation;
};

describe('what a client generator and a reader need', () => {
  it('every operation has a summary, a description and a unique camelCase operationId', () => {
    const ids = operations().map(({ method, path, operation }) => {
      const where = `${method} ${path}`;
      expect(operation.summary, where).toMatch(/\S/);
      expect(operation.description?.length ?? 0, where).toBeGreaterThan(20);
      expect(operation.operationId, where).toMatch(/^[a-z][A-Za-z0-9]+$/);
      return operation.operationId;
    });
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('every operation has an example of its success answer, and lists its errors', () => {
    for (const { method, path, operation } of operations()) {
      const where = `${method} ${path}`;
      const statuses = Object.keys(operation.responses);
      const success = statuses.filter((status) => status.startsWith('2')).sort()[0];
      expect(success, where).toBeDefined();
      const recorded = apiExamples.operations[operation.operationId ?? ''] ?? [];
      expect(
        recorded.some((example) => String(example.response.status) === success),
        `${where}: no recorded example answers ${success}`,
      ).toBe(true);
      // JSON and text answers carry it as a content example (bytes have headers only).
      const content = operation.responses[success as string]?.content ?? {};
      for (const [type, media] of Object.entries(content)) {
        if (type === 'application/octet-stream') continue;
        expect(Object.keys(media.examples ?? {}).length, `${where} ${type}`).toBeGreaterThan(0);
      }
      const errors = statuses.filter((status) => Number(status) >= 400);
      expect(errors, where).toContain('500');
      for (const status of errors) {
        const response = operation.responses[status];
        const isEnvelope =
          JSON.stringify(response?.content?.['application/json']?.schema) ===
          '{"$ref":"#/components/schemas/ErrorEnvelope"}';
        // The health probe's 503 is its own body, with success false.
        expect(response?.description, `${where} ${status}`).toMatch(
          isEnvelope ? /^Error envelope; error\.code: [A-Z_]+/ : /^(?!Default Response)\S/,
        );
      }
    }
  });

  it('asks for confirm in the body of every restore', () => {
    for (const operationId of ['restoreBackup', 'restoreTargetBackup', 'pitrRestore']) {
      const schema = operationById(operationId).requestBody?.content['application/json']?.schema;
      expect(schema?.required, operationId).toContain('confirm');
      expect(operationById(operationId).responses['400']?.description).toContain(
        'CONFIRMATION_REQUIRED',
      );
    }
  });

  it('documents the download: bytes, Range, 206 and 416, and the checksum headers', () => {
    for (const operationId of ['downloadBackup', 'downloadTargetBackup']) {
      const operation = operationById(operationId);
      expect(operation.parameters).toContainEqual(
        expect.objectContaining({ name: 'range', in: 'header', required: false }),
      );
      for (const status of ['200', '206']) {
        const response = operation.responses[status];
        expect(response?.content?.['application/octet-stream']?.schema).toEqual({
          type: 'string',
          format: 'binary',
        });
        expect(Object.keys(response?.headers ?? {})).toEqual(
          expect.arrayContaining([
            'content-length',
            'accept-ranges',
            'etag',
            'x-checksum-sha256',
            'repr-digest',
          ]),
        );
      }
      expect(Object.keys(operation.responses['206']?.headers ?? {})).toContain('content-range');
      expect(Object.keys(operation.responses['416']?.headers ?? {})).toEqual(['content-range']);
      expect(operation.responses['416']?.description).toContain('RANGE_NOT_SATISFIABLE');
      // The real answers (recorded) carry every header documented for their status.
      const recorded = apiExamples.operations[operationId] ?? [];
      expect(recorded.length).toBeGreaterThan(0);
      for (const { title, response } of recorded) {
        const documentedHeaders = Object.keys(
          operation.responses[String(response.status)]?.headers ?? {},
        );
        expect(Object.keys(response.headers ?? {}), title).toEqual(
          expect.arrayContaining(documentedHeaders),
        );
      }
    }
  });

  it('each recorded example is a request its route takes and an answer its schemas accept', () => {
    const byId = new Map<string, RouteOptions>();
    for (const route of documented()) {
      const operationId = (route.schema as { operationId?: string } | undefined)?.operationId;
      if (operationId) byId.set(operationId, route);
    }
    const parses = (schema: unknown, value: unknown) =>
      (schema as z.ZodType).safeParse(value).error?.issues ?? [];
    for (const [operationId, examples] of Object.entries(apiExamples.operations)) {
      const route = byId.get(operationId);
      expect(route, `${operationId} is no route`).toBeDefined();
      if (!route) continue;
      const schema = route.schema as Record<string, unknown> & {
        response: Record<string, unknown>;
      };
      const doc = schema[ROUTE_DOC_KEY] as ResolvedRouteDoc;
      for (const example of examples as ApiExample[]) {
        const where = `${operationId}: ${example.title}`;
        const url = new URL(example.request.url, 'http://localhost');
        const pattern = new RegExp(`^${route.url.replace(/:[A-Za-z]+/g, '([^/]+)')}$`);
        expect(methodsOf(route), where).toContain(example.request.method.toLowerCase());
        expect(url.pathname, where).toMatch(pattern);
        const { status, body } = example.response;
        const declared = schema.response[status];
        expect(declared, `${where}: ${status} is not declared`).toBeDefined();
        if (status < 400) {
          // What the client sent is what the route accepts.
          if (schema.body)
            expect(parses(schema.body, example.request.body ?? null), where).toEqual([]);
          if (schema.querystring) {
            const query = Object.fromEntries(url.searchParams);
            expect(parses(schema.querystring, query), where).toEqual([]);
          }
        } else {
          // An error the route's doc lists, with its status from core's table.
          const code = (body as { error: { code: string } }).error.code as keyof typeof errorStatus;
          expect(doc.allErrors, where).toContain(code);
          expect(errorStatus[code], where).toBe(status);
        }
        const content = (declared as { content?: Record<string, unknown> }).content;
        if (content) {
          const type = example.response.headers?.['content-type'] ?? '';
          expect(
            Object.keys(content).some((key) => type.startsWith(key)),
            where,
          ).toBe(true);
        } else {
          expect(parses(declared, body), where).toEqual([]);
        }
      }
    }
  });

  it('docs/api.md is what `npm run docs:gen-api` makes of this document and the examples', async () => {
    const file = await readFile(new URL('../docs/api.md', import.meta.url), 'utf8');
    const made = renderApiReference(spec as unknown as OpenAPIV3_1.Document, apiExamples);
    expect(file === made, 'docs/api.md is stale: run npm run docs:gen-api').toBe(true);
  });
});
