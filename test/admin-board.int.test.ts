import { createHmac } from 'node:crypto';
import { createSigner } from 'fast-jwt';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminHeaders, json, startApi, type TestApi, token } from './support/api.js';
import { createTestEnv, JWT_SECRET, type TestEnv } from './support/test-env.js';

/**
 * The operators' board (/admin/queues) and its sign-in: the same authority as the API (an
 * admin JWT, checked the same way), kept in a cookie that opens /admin only, and a board that
 * cannot change a queue. No worker runs here.
 */

let env: TestEnv;
let api: TestApi;

beforeAll(async () => {
  env = await createTestEnv('board');
  api = await startApi(env.env);
});

afterAll(async () => {
  for (const queue of Object.values(api?.services.queues ?? {})) {
    await queue.obliterate({ force: true });
  }
  await api?.close();
  await env?.cleanup();
});

const ADMIN = { sub: 'ops@example.com', role: 'SUPER_ADMIN' };
const COOKIE = 'pgkeep_admin';
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
const base64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
const signedHs512 = (claims: object) => {
  const input = `${base64url({ alg: 'HS512', typ: 'JWT' })}.${base64url(claims)}`;
  return `${input}.${createHmac('sha512', JWT_SECRET).update(input).digest('base64url')}`;
};
const expiredToken = () =>
  createSigner({
    key: JWT_SECRET,
    algorithm: 'HS256',
    expiresIn: 60_000,
    clockTimestamp: Date.now() - 3_600_000,
  })(ADMIN);
const hourToken = (claims: object = ADMIN) =>
  createSigner({ key: JWT_SECRET, algorithm: 'HS256', expiresIn: 3_600_000 })(claims);

/** Tokens the API refuses are refused at sign-in too, for the same reason. */
const refused = [
  { name: 'garbage', token: () => 'garbage', status: 401, reason: 'invalid' },
  {
    name: 'another secret',
    token: () => token(ADMIN, 'another-secret-that-is-also-long-enough-0123456789'),
    status: 401,
    reason: 'invalid',
  },
  { name: 'an expired token', token: expiredToken, status: 401, reason: 'expired' },
  {
    name: "alg 'none'",
    token: () => `${base64url({ alg: 'none' })}.${base64url(ADMIN)}.`,
    status: 401,
    reason: 'invalid',
  },
  {
    name: 'HS512 (only HS256 is accepted)',
    token: () => signedHs512(ADMIN),
    status: 401,
    reason: 'invalid',
  },
  {
    name: 'no named user',
    token: () => token({ role: 'SUPER_ADMIN' }),
    status: 401,
    reason: 'invalid',
  },
  {
    name: "role 'USER'",
    token: () => token({ sub: 'u@example.com', role: 'USER' }),
    status: 403,
    reason: 'forbidden',
  },
] as const;

const cookieOf = (response: LightMyRequestResponse) =>
  response.cookies.find((cookie) => cookie.name === COOKIE);

const withCookie = (value: string) => ({ cookie: `${COOKIE}=${value}` });

function expectEnvelope(response: LightMyRequestResponse, status: number, code: string) {
  expect(response.statusCode, response.body).toBe(status);
  expect(response.headers['content-type']).toMatch(/^application\/json/);
  expect(json(response)).toEqual({ success: false, error: { code, message: expect.any(String) } });
}

describe('POST /admin/login', () => {
  it.each(refused)('refuses $name with $status and sets no cookie', async (refusal) => {
    const response = await api.app.inject({
      method: 'POST',
      url: '/admin/login',
      payload: { token: refusal.token() },
    });
    expectEnvelope(response, refusal.status, refusal.status === 401 ? 'UNAUTHORIZED' : 'FORBIDDEN');
    expect(cookieOf(response)).toBeUndefined();
  });

  it.each(refused)('sends the form back to the sign-in page for $name', async (refusal) => {
    const response = await api.app.inject({
      method: 'POST',
      url: '/admin/login',
      headers: FORM,
      payload: new URLSearchParams({ token: refusal.token() }).toString(),
    });
    expect(response.statusCode).toBe(303);
    expect(response.headers.location).toBe(`/admin/login?error=${refusal.reason}`);
    expect(cookieOf(response)).toBeUndefined();
  });

  it('keeps an admin token in an HttpOnly, SameSite=Strict cookie for /admin that dies with the token', async () => {
    const adminToken = hourToken();
    const exp = (
      JSON.parse(Buffer.from(adminToken.split('.')[1] ?? '', 'base64url').toString()) as {
        exp: number;
      }
    ).exp;
    const response = await api.app.inject({
      method: 'POST',
      url: '/admin/login',
      payload: { token: adminToken },
    });
    expect(response.statusCode, response.body).toBe(200);
    expect(json(response)).toMatchObject({
      success: true,
      data: { requestedBy: 'ops@example.com', expiresAt: new Date(exp * 1000).toISOString() },
    });
    const cookie = cookieOf(response);
    expect(cookie).toMatchObject({
      value: adminToken,
      path: '/admin',
      httpOnly: true,
      sameSite: 'Strict',
    });
    expect(cookie?.expires?.getTime()).toBe(exp * 1000);
    // Plain http here, and ADMIN_COOKIE_SECURE=auto: not Secure (the browser would drop it).
    expect(cookie?.secure).toBeUndefined();
    expect(response.headers['cache-control']).toBe('no-store');
  });

  it('lets in permission backup:manage', async () => {
    const response = await api.app.inject({
      method: 'POST',
      url: '/admin/login',
      payload: { token: token({ sub: 'perm@example.com', permissions: ['backup:manage'] }) },
    });
    expect(response.statusCode, response.body).toBe(200);
    expect(json(response)).toMatchObject({ data: { requestedBy: 'perm@example.com' } });
  });

  it('with JWT_REQUIRE_EXP=false, a token without exp gives a browser-session cookie', async () => {
    const lenient = await startApi({ ...env.env, JWT_REQUIRE_EXP: 'false' });
    try {
      const response = await lenient.app.inject({
        method: 'POST',
        url: '/admin/login',
        payload: { token: createSigner({ key: JWT_SECRET, algorithm: 'HS256' })(ADMIN) },
      });
      expect(response.statusCode, response.body).toBe(200);
      expect(json(response)).toMatchObject({
        data: { requestedBy: 'ops@example.com', expiresAt: null },
      });
      expect(cookieOf(response)?.expires).toBeUndefined();
      expect(cookieOf(response)?.maxAge).toBeUndefined();
    } finally {
      await lenient.close();
    }
  });

  it('redirects the sign-in form to the board', async () => {
    const response = await api.app.inject({
      method: 'POST',
      url: '/admin/login',
      headers: FORM,
      payload: new URLSearchParams({ token: hourToken() }).toString(),
    });
    expect(response.statusCode).toBe(303);
    expect(response.headers.location).toBe('/admin/queues');
    expect(cookieOf(response)?.httpOnly).toBe(true);
  });

  it('refuses a form posted from another site (login CSRF)', async () => {
    const response = await api.app.inject({
      method: 'POST',
      url: '/admin/login',
      headers: { ...FORM, 'sec-fetch-site': 'cross-site' },
      payload: new URLSearchParams({ token: hourToken() }).toString(),
    });
    expectEnvelope(response, 403, 'FORBIDDEN');
    expect(cookieOf(response)).toBeUndefined();
  });

  it('refuses a missing, empty or oversized token with 400', async () => {
    for (const payload of [{}, { token: '' }, { token: 'x'.repeat(5000) }]) {
      const response = await api.app.inject({ method: 'POST', url: '/admin/login', payload });
      expect(response.statusCode, response.body).toBe(400);
      expect(json(response).error.code).toBe('VALIDATION_ERROR');
    }
  });

  it('marks the cookie Secure when ADMIN_COOKIE_SECURE=true (TLS ended by a proxy)', async () => {
    const secureApi = await startApi({ ...env.env, ADMIN_COOKIE_SECURE: 'true' });
    try {
      const response = await secureApi.app.inject({
        method: 'POST',
        url: '/admin/login',
        payload: { token: hourToken() },
      });
      expect(cookieOf(response)?.secure).toBe(true);
    } finally {
      await secureApi.close();
    }
  });
});

describe('POST /admin/logout', () => {
  it('clears the cookie (JSON: 200; the page’s form: 303 to the sign-in page)', async () => {
    const asJson = await api.app.inject({
      method: 'POST',
      url: '/admin/logout',
      headers: withCookie(hourToken()),
    });
    expect(asJson.statusCode, asJson.body).toBe(200);
    expect(cookieOf(asJson)).toMatchObject({ value: '', path: '/admin', maxAge: 0 });
    const asForm = await api.app.inject({
      method: 'POST',
      url: '/admin/logout',
      headers: FORM,
      payload: '',
    });
    expect(asForm.statusCode).toBe(303);
    expect(asForm.headers.location).toBe('/admin/login');
    expect(cookieOf(asForm)?.maxAge).toBe(0);
  });
});

describe('GET /admin/login', () => {
  it('shows the form, a fixed message for a known reason and nothing from the URL otherwise', async () => {
    const page = await api.app.inject({ url: '/admin/login?error=expired' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.body).toContain('<form method="post" action="/admin/login">');
    expect(page.body).toContain('The token has expired');
    const hostile = await api.app.inject({
      url: '/admin/login?error=%3Cscript%3Ealert(1)%3C/script%3E',
    });
    expect(hostile.statusCode).toBe(200);
    expect(hostile.body).not.toContain('<script');
  });

  it('says who is signed in when the cookie is good', async () => {
    const page = await api.app.inject({
      url: '/admin/login',
      headers: withCookie(hourToken({ sub: '<b>x</b>@example.com', role: 'SUPER_ADMIN' })),
    });
    expect(page.body).toContain('Signed in as <strong>&lt;b&gt;x&lt;/b&gt;@example.com</strong>');
    expect(page.body).toContain('action="/admin/logout"');
  });
});

describe('/admin/queues', () => {
  const page = { accept: 'text/html,application/xhtml+xml' };

  it('sends a browser without the cookie to the sign-in page, and refuses anything else with 401', async () => {
    const board = await api.app.inject({ url: '/admin/queues', headers: page });
    expect(board.statusCode).toBe(303);
    expect(board.headers.location).toBe('/admin/login?error=signed-out');
    for (const url of ['/admin/queues/api/queues', '/admin/queues/static/favicon-32x32.png']) {
      expectEnvelope(await api.app.inject({ url }), 401, 'UNAUTHORIZED');
    }
    // The board reads its cookie only; a Bearer header does not open it.
    expectEnvelope(
      await api.app.inject({ url: '/admin/queues/api/queues', headers: adminHeaders() }),
      401,
      'UNAUTHORIZED',
    );
  });

  it.each(refused)('refuses a cookie holding $name and drops it', async (refusal) => {
    const apiLike = await api.app.inject({
      url: '/admin/queues/api/queues',
      headers: withCookie(refusal.token()),
    });
    expectEnvelope(apiLike, refusal.status, refusal.status === 401 ? 'UNAUTHORIZED' : 'FORBIDDEN');
    expect(cookieOf(apiLike)?.maxAge).toBe(0);
    const board = await api.app.inject({
      url: '/admin/queues',
      headers: { ...page, ...withCookie(refusal.token()) },
    });
    expect(board.statusCode).toBe(303);
    expect(board.headers.location).toBe(`/admin/login?error=${refusal.reason}`);
  });

  it('shows every pgkeep queue, read-only, to a signed-in admin', async () => {
    const cookie = withCookie(hourToken());
    const board = await api.app.inject({ url: '/admin/queues', headers: { ...page, ...cookie } });
    expect(board.statusCode).toBe(200);
    expect(board.headers['content-type']).toMatch(/^text\/html/);
    const queues = await api.app.inject({ url: '/admin/queues/api/queues', headers: cookie });
    expect(queues.statusCode, queues.body).toBe(200);
    const listed = (queues.json() as { queues: { name: string; readOnlyMode: boolean }[] }).queues;
    expect(listed.map((queue) => queue.name).sort()).toEqual(['backups', 'maintenance']);
    expect(listed.every((queue) => queue.readOnlyMode)).toBe(true);
  });

  it('changes nothing: no pause, no retry, no added job (a restore only through the API)', async () => {
    const cookie = withCookie(hourToken());
    const before = await api.services.queues.maintenance.getJobCounts();
    const attempts = [
      { method: 'PUT', url: '/admin/queues/api/queues/backups/pause' },
      { method: 'PUT', url: '/admin/queues/api/queues/pause' },
      { method: 'PUT', url: '/admin/queues/api/queues/maintenance/retry/failed' },
      {
        method: 'POST',
        url: '/admin/queues/api/queues/maintenance/add',
        payload: { name: 'restore', data: { backupId: 'x', confirm: 'x' }, options: {} },
      },
    ] as const;
    for (const attempt of attempts) {
      const response = await api.app.inject({ ...attempt, headers: cookie });
      expectEnvelope(response, 403, 'FORBIDDEN');
    }
    expect(await api.services.queues.backups.isPaused()).toBe(false);
    expect(await api.services.queues.maintenance.getJobCounts()).toEqual(before);
  });

  it('the cookie never authorizes the JSON API (no CSRF on /api/*)', async () => {
    const cookie = withCookie(hourToken());
    const before = await api.services.queues.backups.getJobCounts();
    expectEnvelope(
      await api.app.inject({ url: '/api/backup', headers: cookie }),
      401,
      'UNAUTHORIZED',
    );
    expectEnvelope(
      await api.app.inject({ method: 'POST', url: '/api/backup', headers: cookie, payload: {} }),
      401,
      'UNAUTHORIZED',
    );
    expect(await api.services.queues.backups.getJobCounts()).toEqual(before);
  });
});
