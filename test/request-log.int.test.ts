import { createLogger, loadConfig } from '@pgkeep/core';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildServer, closeServices, createServices } from '../apps/api/src/server.js';
import type { ApiServices } from '../apps/api/src/services/api-services.js';
import { adminHeaders, token } from './support/api.js';
import { createTestEnv, type TestEnv } from './support/test-env.js';

/**
 * The API's request lines as an operator reads them at LOG_LEVEL=info: probes and the board's
 * static files leave no line unless they fail, every other request leaves its lines, and the
 * line of a refused request names the error code the client got.
 */

interface Line {
  level: number;
  msg: string;
  reqId?: string;
  req?: { url: string; method: string };
  res?: { statusCode: number };
  code?: string;
}

const INFO = 30;
const WARN = 40;

let env: TestEnv;
let services: ApiServices;
let app: FastifyInstance;
const lines: Line[] = [];

beforeAll(async () => {
  env = await createTestEnv('reqlog');
  const config = loadConfig({ ...env.env, LOG_LEVEL: 'info' });
  services = await createServices(config, createLogger('silent', 'reqlog-test'), env.env);
  app = await buildServer(config, services, {
    logStream: { write: (line: string) => lines.push(JSON.parse(line) as Line) },
  });
  await app.ready();
  await vi.waitFor(() => expect(services.redis.status).toBe('ready'), {
    timeout: 10_000,
    interval: 20,
  });
});

afterAll(async () => {
  await app?.close();
  if (services) await closeServices(services);
  await env?.cleanup();
});

/**
 * The lines of one request, found by the URL of its `incoming request` line, or of the
 * request just made when a quiet route wrote no incoming line. A request's lines are written
 * by the time a later request's completion line is: each call ends with a plain request whose
 * completion it waits for, so an absent line is really absent, not late.
 */
async function linesOf(request: InjectOptions): Promise<{ status: number; lines: Line[] }> {
  const from = lines.length;
  const response = await app.inject(request);
  const marker = await app.inject({ method: 'GET', url: '/marker-after-request' });
  expect(marker.statusCode).toBe(404);
  await vi.waitFor(
    () => {
      const markerId = lines
        .slice(from)
        .find((line) => line.req?.url === '/marker-after-request')?.reqId;
      expect(
        lines.slice(from).some((line) => line.reqId === markerId && line.res !== undefined),
      ).toBe(true);
    },
    { timeout: 5_000, interval: 10 },
  );
  const written = lines.slice(from);
  const markerId = written.find((line) => line.req?.url === '/marker-after-request')?.reqId;
  return { status: response.statusCode, lines: written.filter((line) => line.reqId !== markerId) };
}

describe('request lines', () => {
  it('a normal request leaves its incoming and completed lines at info', async () => {
    const { status, lines: written } = await linesOf({
      method: 'GET',
      url: '/api/backup',
      headers: adminHeaders(),
    });
    expect(status).toBe(200);
    expect(written.map((line) => [line.level, line.msg])).toEqual([
      [INFO, 'incoming request'],
      [INFO, 'request completed'],
    ]);
    expect(written[0]?.req).toMatchObject({ method: 'GET', url: '/api/backup' });
    expect(written[1]?.res).toEqual({ statusCode: 200 });
    expect(written[1]?.code).toBeUndefined();
  });

  it('an answered health probe leaves no line', async () => {
    const { status, lines: written } = await linesOf({
      method: 'GET',
      url: '/api/backup/health/detail',
      headers: adminHeaders(),
    });
    expect(status).toBe(200);
    expect(written).toEqual([]);
  });

  it('a failing health probe leaves one warning, with its status', async () => {
    // No worker runs here: the probe answers 503 (workers: none alive).
    const { status, lines: written } = await linesOf({ method: 'GET', url: '/api/backup/health' });
    expect(status).toBe(503);
    expect(written).toHaveLength(1);
    expect(written[0]).toMatchObject({
      level: WARN,
      msg: 'request completed',
      res: { statusCode: 503 },
    });
  });

  it("the board's static files leave no line", async () => {
    const { status, lines: written } = await linesOf({
      method: 'GET',
      url: '/admin/queues/static/favicon-32x32.png',
      headers: { cookie: `pgkeep_admin=${token()}` },
    });
    expect(status).toBe(200);
    expect(written).toEqual([]);
    // The board's pages still do.
    const page = await linesOf({
      method: 'GET',
      url: '/admin/queues',
      headers: { cookie: `pgkeep_admin=${token()}` },
    });
    expect(page.status).toBe(200);
    expect(page.lines.map((line) => line.msg)).toEqual(['incoming request', 'request completed']);
  });

  it.each([
    {
      name: 'an invalid body',
      request: {
        method: 'POST' as const,
        url: '/api/backup',
        headers: adminHeaders(),
        payload: { format: 'tar' },
      },
      status: 400,
      code: 'VALIDATION_ERROR',
    },
    {
      name: 'a role without the permission',
      request: {
        method: 'GET' as const,
        url: '/api/backup',
        headers: { authorization: `Bearer ${token({ sub: 'u@example.com', role: 'USER' })}` },
      },
      status: 403,
      code: 'FORBIDDEN',
    },
    {
      name: 'no token',
      request: { method: 'GET' as const, url: '/api/backup' },
      status: 401,
      code: 'UNAUTHORIZED',
    },
    {
      name: 'an unknown route',
      request: { method: 'GET' as const, url: '/api/nothing-here' },
      status: 404,
      code: 'ROUTE_NOT_FOUND',
    },
    {
      name: 'a change through the read-only board',
      request: {
        method: 'PUT' as const,
        url: '/admin/queues/api/queues/pause',
        headers: { cookie: `pgkeep_admin=${token()}` },
      },
      status: 403,
      code: 'FORBIDDEN',
    },
  ])('the line of $name ($status) carries the code $code', async ({ request, status, code }) => {
    const result = await linesOf(request);
    expect(result.status).toBe(status);
    const completed = result.lines.find((line) => line.msg === 'request completed');
    expect(completed).toMatchObject({ level: INFO, res: { statusCode: status }, code });
  });
});
