import { createHmac, generateKeyPairSync, randomUUID } from 'node:crypto';
import { createSigner } from 'fast-jwt';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { json, startApi, type TestApi, token } from './support/api.js';
import { createTestEnv, JWT_SECRET, type TestEnv } from './support/test-env.js';

/**
 * Every admin route refuses every kind of bad credential the same way (401 for "who are you?",
 * 403 for "not an admin"), with the panel's error envelope, and a refused request never
 * reaches a queue. No worker runs here: the jobs that authorized requests enqueue just wait.
 */

let env: TestEnv;
let api: TestApi;

beforeAll(async () => {
  env = await createTestEnv('auth');
  api = await startApi(env.env);
});

afterAll(async () => {
  // The jobs that authorized requests queued would otherwise stay in Redis under this prefix.
  for (const queue of Object.values(api?.services.queues ?? {})) {
    await queue.obliterate({ force: true });
  }
  await api?.close();
  await env?.cleanup();
});

const MISSING_BACKUP = '2020-01-01T00-00-00-000Z-abcdefabcdef';
const ADMIN = { sub: 'admin@example.com', role: 'SUPER_ADMIN' };

interface Route {
  method: 'GET' | 'POST' | 'DELETE';
  url: string;
  payload?: object;
  /** What an authorized caller gets: the route ran past authorization. */
  authorized: { status: number; code?: string };
}

const routes: Route[] = [
  { method: 'POST', url: '/api/backup', payload: {}, authorized: { status: 202 } },
  { method: 'GET', url: '/api/backup', authorized: { status: 200 } },
  { method: 'GET', url: '/api/backup/stats', authorized: { status: 200 } },
  {
    method: 'GET',
    url: `/api/backup/${MISSING_BACKUP}`,
    authorized: { status: 404, code: 'BACKUP_NOT_FOUND' },
  },
  {
    method: 'DELETE',
    url: `/api/backup/${MISSING_BACKUP}`,
    authorized: { status: 404, code: 'BACKUP_NOT_FOUND' },
  },
  { method: 'POST', url: '/api/backup/clean?keepLast=3', authorized: { status: 202 } },
  {
    method: 'GET',
    url: `/api/jobs/backup-${randomUUID()}`,
    authorized: { status: 404, code: 'JOB_NOT_FOUND' },
  },
];

const base64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

/** A JWT built by hand, so that headers a signing library refuses to write can be tried. */
function handMadeToken(header: object, claims: object, sign: (input: string) => string): string {
  const input = `${base64url(header)}.${base64url(claims)}`;
  return `${input}.${sign(input)}`;
}

const hmac = (algorithm: 'sha256' | 'sha512', secret: string) => (input: string) =>
  createHmac(algorithm, secret).update(input).digest('base64url');

const nowSeconds = () => Math.floor(Date.now() / 1000);

interface Refusal {
  name: string;
  authorization: () => string | undefined;
  status: 401 | 403;
  /** What the message should say, where the reason matters to whoever reads it. */
  message?: RegExp;
}

const refusals: Refusal[] = [
  {
    name: 'no Authorization header',
    authorization: () => undefined,
    status: 401,
    message: /Bearer token is required/,
  },
  { name: 'a garbage Bearer token', authorization: () => 'Bearer garbage', status: 401 },
  { name: 'an empty Bearer token', authorization: () => 'Bearer ', status: 401 },
  {
    name: 'Basic credentials instead of a Bearer token',
    authorization: () => `Basic ${Buffer.from('admin:admin').toString('base64')}`,
    status: 401,
  },
  {
    name: 'a token signed with another secret',
    authorization: () =>
      `Bearer ${token(ADMIN, 'another-secret-that-is-also-long-enough-0123456789')}`,
    status: 401,
  },
  {
    name: 'an expired token',
    authorization: () =>
      `Bearer ${createSigner({
        key: JWT_SECRET,
        algorithm: 'HS256',
        expiresIn: 60_000,
        clockTimestamp: Date.now() - 3_600_000,
      })(ADMIN)}`,
    status: 401,
    message: /expired/,
  },
  {
    name: 'a token that is not valid yet (nbf in the future)',
    authorization: () =>
      `Bearer ${createSigner({ key: JWT_SECRET, algorithm: 'HS256' })({
        ...ADMIN,
        nbf: nowSeconds() + 3_600,
      })}`,
    status: 401,
  },
  {
    name: "a token with alg 'none' and no signature",
    authorization: () => `Bearer ${handMadeToken({ alg: 'none', typ: 'JWT' }, ADMIN, () => '')}`,
    status: 401,
  },
  {
    name: 'an HS512 token signed with the right secret (only HS256 is accepted)',
    authorization: () =>
      `Bearer ${handMadeToken({ alg: 'HS512', typ: 'JWT' }, ADMIN, hmac('sha512', JWT_SECRET))}`,
    status: 401,
  },
  {
    name: 'a tampered token (claims changed after signing)',
    authorization: () => {
      const [header, , signature] = token({ sub: 'someone', role: 'USER' }).split('.');
      return `Bearer ${header}.${base64url(ADMIN)}.${signature}`;
    },
    status: 401,
  },
  {
    name: 'a valid admin token that names no user (no sub, userId or id)',
    authorization: () => `Bearer ${token({ role: 'SUPER_ADMIN' })}`,
    status: 401,
    message: /does not name its user/,
  },
  {
    name: 'a valid admin token whose sub is empty',
    authorization: () => `Bearer ${token({ sub: '', role: 'SUPER_ADMIN' })}`,
    status: 401,
  },
  {
    name: "a valid token with role 'USER'",
    authorization: () => `Bearer ${token({ sub: 'user@example.com', role: 'USER' })}`,
    status: 403,
  },
  {
    name: "a valid token with role 'ADMIN' (not SUPER_ADMIN)",
    authorization: () => `Bearer ${token({ sub: 'user@example.com', role: 'ADMIN' })}`,
    status: 403,
  },
  {
    name: 'a valid token with an unrelated permission',
    authorization: () =>
      `Bearer ${token({ sub: 'user@example.com', permissions: ['backup:read'] })}`,
    status: 403,
  },
];

const codeOf = (status: 401 | 403) => (status === 401 ? 'UNAUTHORIZED' : 'FORBIDDEN');

const allowed = [
  { name: "role 'SUPER_ADMIN'", claims: ADMIN, requestedBy: 'admin@example.com' },
  {
    name: "permission 'backup:manage'",
    claims: { sub: 'ops@example.com', role: 'USER', permissions: ['backup:manage'] },
    requestedBy: 'ops@example.com',
  },
  {
    name: "roles ['SUPER_ADMIN']",
    claims: { sub: 'roles@example.com', roles: ['USER', 'SUPER_ADMIN'] },
    requestedBy: 'roles@example.com',
  },
  {
    name: 'the panel’s userId claim in place of sub',
    claims: { userId: 42, role: 'SUPER_ADMIN' },
    requestedBy: '42',
  },
];

function send(target: TestApi, route: Route, authorization: string | undefined) {
  return target.app.inject({
    method: route.method,
    url: route.url,
    headers: authorization === undefined ? {} : { authorization },
    ...(route.payload === undefined ? {} : { payload: route.payload }),
  });
}

function expectError(response: LightMyRequestResponse, status: number, code: string) {
  expect(response.statusCode, response.body).toBe(status);
  expect(response.headers['content-type']).toMatch(/^application\/json/);
  const body = json(response);
  // Validation errors may add `details`; nothing else joins the envelope.
  const details = 'details' in body.error ? { details: expect.any(Array) } : {};
  expect(body).toEqual({
    success: false,
    error: { code, message: expect.any(String), ...details },
  });
  expect(body.error.message.length).toBeGreaterThan(0);
}

async function queueCounts(target: TestApi) {
  return {
    backups: await target.services.queues.backups.getJobCounts(),
    maintenance: await target.services.queues.maintenance.getJobCounts(),
  };
}

function expectAuthorized(response: LightMyRequestResponse, route: Route) {
  expect(response.statusCode, response.body).toBe(route.authorized.status);
  if (route.authorized.code) {
    expectError(response, route.authorized.status, route.authorized.code);
  } else {
    expect(json(response).success).toBe(true);
  }
}

describe.each(routes)('$method $url', (route) => {
  it.each(refusals)('refuses $name with $status and queues nothing', async (refusal) => {
    const before = await queueCounts(api);
    const response = await send(api, route, refusal.authorization());
    expectError(response, refusal.status, codeOf(refusal.status));
    if (refusal.message) expect(json(response).error.message).toMatch(refusal.message);
    expect(await queueCounts(api)).toEqual(before);
  });

  it.each(allowed)('lets in a token with $name', async ({ claims }) => {
    const response = await send(api, route, `Bearer ${token(claims)}`);
    expectAuthorized(response, route);
  });
});

describe('authentication comes before input validation', () => {
  // A caller without a valid admin token learns nothing about the input rules (no schema
  // details in a 400) and gets the same answer whatever it sends.
  const invalid = (code: string) => ({ status: 400, code });
  const badInput: Route[] = [
    {
      method: 'POST',
      url: '/api/backup',
      payload: { format: 'tar' },
      authorized: invalid('VALIDATION_ERROR'),
    },
    {
      method: 'POST',
      url: '/api/backup',
      payload: { tables: ['User"; DROP TABLE x; --'] },
      authorized: invalid('INVALID_TABLE_NAME'),
    },
    { method: 'GET', url: '/api/backup/not-an-id', authorized: invalid('INVALID_BACKUP_ID') },
    { method: 'DELETE', url: '/api/backup/not-an-id', authorized: invalid('INVALID_BACKUP_ID') },
    {
      method: 'POST',
      url: '/api/backup/clean?keepLast=0',
      authorized: invalid('VALIDATION_ERROR'),
    },
    {
      method: 'POST',
      url: '/api/backup/clean?keepLast=3&extra=1',
      authorized: invalid('VALIDATION_ERROR'),
    },
    { method: 'GET', url: '/api/jobs/not-a-job', authorized: invalid('INVALID_JOB_ID') },
  ];
  const cases = badInput.flatMap((route) => [
    { ...route, who: 'no token', authorization: undefined, status: 401 as const },
    {
      ...route,
      who: "a role 'USER' token",
      authorization: `Bearer ${token({ sub: 'user@example.com', role: 'USER' })}`,
      status: 403 as const,
    },
  ]);

  it.each(badInput)('$method $url is bad input for an admin', async (route) => {
    const before = await queueCounts(api);
    expectAuthorized(await send(api, route, `Bearer ${token(ADMIN)}`), route);
    expect(await queueCounts(api)).toEqual(before);
  });

  it.each(cases)('$method $url with $who → $status, not a validation error', async (route) => {
    const before = await queueCounts(api);
    const response = await send(api, route, route.authorization);
    expectError(response, route.status, codeOf(route.status));
    expect(await queueCounts(api)).toEqual(before);
  });
});

describe('who asked', () => {
  it.each(allowed)('a job queued with $name records its user', async ({ claims, requestedBy }) => {
    const response = await api.app.inject({
      method: 'POST',
      url: '/api/backup',
      headers: { authorization: `Bearer ${token(claims)}` },
      payload: {},
    });
    expect(response.statusCode, response.body).toBe(202);
    const { jobId } = (response.json() as { data: { jobId: string } }).data;
    const job = await api.services.queues.backups.getJob(jobId);
    expect(job?.data).toMatchObject({ requestedBy });
  });
});

describe('GET /api/backup/health', () => {
  it.each([
    { name: 'without a token', authorization: undefined },
    { name: 'with a garbage token', authorization: 'Bearer garbage' },
    {
      name: "with a role 'USER' token",
      authorization: `Bearer ${token({ sub: 'u', role: 'USER' })}`,
    },
  ])('answers $name (200 or 503, never 401/403)', async ({ authorization }) => {
    const response = await api.app.inject({
      method: 'GET',
      url: '/api/backup/health',
      headers: authorization === undefined ? {} : { authorization },
    });
    expect([200, 503], response.body).toContain(response.statusCode);
    const body = response.json() as { success: boolean; data: { healthy: boolean } };
    expect(body.success).toBe(response.statusCode === 200);
    expect(body.data.healthy).toBe(response.statusCode === 200);
  });
});

describe('a verified token is reused for polls only until it expires', () => {
  // The API keeps a token's verification for the next polls (authorize-token-cache.ts); from
  // the token's exp on, every request gets the full check again, which refuses it.
  it('polls with a short-lived admin token answer 401 "expired" from its exp on', async () => {
    const shortLived = createSigner({ key: JWT_SECRET, algorithm: 'HS256', expiresIn: 1_500 })(
      ADMIN,
    );
    const claims = JSON.parse(
      Buffer.from(shortLived.split('.')[1] ?? '', 'base64url').toString(),
    ) as { exp: number };
    const expiresAt = claims.exp * 1000;
    const poll = routes.find((route) => route.url.startsWith('/api/jobs/')) as Route;
    expectAuthorized(await send(api, poll, `Bearer ${shortLived}`), poll);
    const deadline = expiresAt + 10_000;
    for (;;) {
      const sentAt = Date.now();
      const response = await send(api, poll, `Bearer ${shortLived}`);
      if (response.statusCode === 401) {
        expect(Date.now()).toBeGreaterThanOrEqual(expiresAt);
        expect(json(response).error.message).toMatch(/expired/);
        break;
      }
      expect(sentAt, 'a poll sent after exp was let in').toBeLessThan(expiresAt);
      expectAuthorized(response, poll);
      expect(Date.now()).toBeLessThan(deadline);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  });
});

describe('RS256 tokens via JWT_PUBLIC_KEY', () => {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const publicPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const privatePem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const otherPrivatePem = generateKeyPairSync('rsa', { modulusLength: 2048 })
    .privateKey.export({ type: 'pkcs8', format: 'pem' })
    .toString();
  const rs256 = (claims: object, key = privatePem) =>
    createSigner({ key, algorithm: 'RS256', expiresIn: 3_600_000 })(claims);

  let rsApi: TestApi;

  beforeAll(async () => {
    rsApi = await startApi({ ...env.env, JWT_SECRET: '', JWT_PUBLIC_KEY: publicPem });
    expect(rsApi.config.JWT_SECRET).toBeUndefined();
  });

  afterAll(async () => {
    await rsApi?.close();
  });

  it.each(routes)('$method $url lets in an RS256 admin token', async (route) => {
    const response = await send(rsApi, route, `Bearer ${rs256(ADMIN)}`);
    expectAuthorized(response, route);
  });

  it.each([
    {
      name: 'an HS256 token keyed with the public key PEM (algorithm confusion)',
      authorization: () =>
        `Bearer ${handMadeToken({ alg: 'HS256', typ: 'JWT' }, ADMIN, hmac('sha256', publicPem))}`,
      status: 401,
    },
    {
      name: 'an HS256 token keyed with the trimmed public key PEM (algorithm confusion)',
      authorization: () =>
        `Bearer ${handMadeToken(
          { alg: 'HS256', typ: 'JWT' },
          ADMIN,
          hmac('sha256', publicPem.trim()),
        )}`,
      status: 401,
    },
    {
      name: 'an HS256 token signed with the old shared secret',
      authorization: () => `Bearer ${token(ADMIN)}`,
      status: 401,
    },
    {
      name: 'an RS256 token signed with another private key',
      authorization: () => `Bearer ${rs256(ADMIN, otherPrivatePem)}`,
      status: 401,
    },
    {
      name: "a token with alg 'none'",
      authorization: () => `Bearer ${handMadeToken({ alg: 'none', typ: 'JWT' }, ADMIN, () => '')}`,
      status: 401,
    },
    {
      name: "an RS256 token with role 'USER'",
      authorization: () => `Bearer ${rs256({ sub: 'user@example.com', role: 'USER' })}`,
      status: 403,
    },
  ] satisfies Omit<Refusal, 'message'>[])(
    'refuses $name with $status on every route',
    async ({ authorization, status }) => {
      for (const route of routes) {
        const before = await queueCounts(rsApi);
        const response = await send(rsApi, route, authorization());
        expectError(response, status, codeOf(status));
        expect(await queueCounts(rsApi)).toEqual(before);
      }
    },
  );
});
