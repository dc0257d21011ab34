import { createLogger, errorStatus, loadConfig } from '@pgkeep/core';
import Fastify, { type FastifyInstance, type RouteOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { app as apiPlugin } from '../apps/api/src/app.js';
import { closeServices, createServices } from '../apps/api/src/server.js';
import type { ApiServices } from '../apps/api/src/services/api-services.js';
import { createTestEnv, type TestEnv } from './support/test-env.js';

/**
 * /docs/json documents every route the API registers, with its method and every status code
 * its schema declares, and the error envelope and bearer auth. Routes are collected with an
 * onRoute hook on the real app, so a route added later without documentation fails here.
 */

interface Operation {
  responses: Record<string, { description: string; content?: Record<string, { schema: unknown }> }>;
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
