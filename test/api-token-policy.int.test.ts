import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { createSigner } from 'fast-jwt';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { json, startApi, type TestApi } from './support/api.js';
import { root } from './support/processes.js';
import { createTestEnv, JWT_SECRET, type TestEnv } from './support/test-env.js';

/**
 * What a token must carry besides a good signature (an expiry; the configured issuer and
 * audience; a lifetime within the configured maximum), and what repeated refusals from one
 * client address earn: 429 with Retry-After, for that address only.
 */

let env: TestEnv;
const apis: TestApi[] = [];

beforeAll(async () => {
  env = await createTestEnv('token_policy');
});

afterAll(async () => {
  for (const api of apis) await api.close();
  await env?.cleanup();
});

async function apiWith(overrides: Record<string, string> = {}): Promise<TestApi> {
  const api = await startApi({ ...env.env, ...overrides });
  apis.push(api);
  return api;
}

const ADMIN = { sub: 'admin@example.com', role: 'SUPER_ADMIN' };
const HOUR_MS = 3_600_000;

/** Signs `claims` as given: no exp or iat is added unless asked for. */
function signed(
  claims: Record<string, unknown>,
  options: { expiresInMs?: number; noTimestamp?: boolean } = {},
) {
  return createSigner({
    key: JWT_SECRET,
    algorithm: 'HS256',
    ...(options.expiresInMs ? { expiresIn: options.expiresInMs } : {}),
    ...(options.noTimestamp ? { noTimestamp: true } : {}),
  })(claims);
}

/** An admin-only read: 200 once authorized. */
function listBackups(api: TestApi, token: string | undefined, remoteAddress = '127.0.0.1') {
  return api.app.inject({
    method: 'GET',
    url: '/api/backup',
    remoteAddress,
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  });
}

function expectRefused(response: LightMyRequestResponse, message: RegExp) {
  expect(response.statusCode, response.body).toBe(401);
  expect(json(response).error.code).toBe('UNAUTHORIZED');
  expect(json(response).error.message).toMatch(message);
}

describe('tokens must expire (JWT_REQUIRE_EXP, on by default)', () => {
  let api: TestApi;
  beforeAll(async () => {
    api = await apiWith();
  });

  it('refuses an admin token without exp with 401 saying so', async () => {
    expectRefused(await listBackups(api, signed(ADMIN)), /exp/);
  });

  it('lets in the same claims with an exp', async () => {
    const response = await listBackups(api, signed(ADMIN, { expiresInMs: HOUR_MS }));
    expect(response.statusCode, response.body).toBe(200);
  });

  it('refuses a token without exp at the board sign-in too, and sets no cookie', async () => {
    const response = await api.app.inject({
      method: 'POST',
      url: '/admin/login',
      payload: { token: signed(ADMIN) },
    });
    expectRefused(response, /exp/);
    expect(response.headers['set-cookie']).toBeUndefined();
  });

  it('a token without exp that was refused is not let in on a later request either', async () => {
    const noExp = signed({ ...ADMIN, sub: 'again@example.com' });
    for (let i = 0; i < 3; i += 1) expectRefused(await listBackups(api, noExp), /exp/);
  });

  it('JWT_REQUIRE_EXP=false lets a token without exp in', async () => {
    const lenient = await apiWith({ JWT_REQUIRE_EXP: 'false' });
    const response = await listBackups(lenient, signed(ADMIN));
    expect(response.statusCode, response.body).toBe(200);
  });
});

describe('JWT_ISSUER and JWT_AUDIENCE', () => {
  let api: TestApi;
  beforeAll(async () => {
    api = await apiWith({ JWT_ISSUER: 'https://panel.example.com', JWT_AUDIENCE: 'pgkeep' });
  });
  const withClaims = (extra: Record<string, unknown>) =>
    signed({ ...ADMIN, ...extra }, { expiresInMs: HOUR_MS });

  it('lets in the configured issuer and audience (aud a string or a list)', async () => {
    for (const aud of ['pgkeep', ['panel', 'pgkeep']]) {
      const response = await listBackups(
        api,
        withClaims({ iss: 'https://panel.example.com', aud }),
      );
      expect(response.statusCode, response.body).toBe(200);
    }
  });

  it.each([
    { name: 'another issuer', claims: { iss: 'https://evil.example.com', aud: 'pgkeep' } },
    { name: 'no issuer', claims: { aud: 'pgkeep' } },
  ])('refuses $name with 401 naming the issuer', async ({ claims }) => {
    expectRefused(await listBackups(api, withClaims(claims)), /issuer/);
  });

  it.each([
    { name: 'another audience', claims: { iss: 'https://panel.example.com', aud: 'other' } },
    { name: 'a list without it', claims: { iss: 'https://panel.example.com', aud: ['a', 'b'] } },
    { name: 'no audience', claims: { iss: 'https://panel.example.com' } },
  ])('refuses $name with 401 naming the audience', async ({ claims }) => {
    expectRefused(await listBackups(api, withClaims(claims)), /audience/);
  });
});

describe('JWT_MAX_LIFETIME_SECONDS', () => {
  let api: TestApi;
  beforeAll(async () => {
    api = await apiWith({ JWT_MAX_LIFETIME_SECONDS: '3600' });
  });

  it('lets in a token whose exp - iat is within the maximum', async () => {
    const response = await listBackups(api, signed(ADMIN, { expiresInMs: 30 * 60_000 }));
    expect(response.statusCode, response.body).toBe(200);
  });

  it('refuses a token that lives longer than the maximum', async () => {
    expectRefused(await listBackups(api, signed(ADMIN, { expiresInMs: 2 * HOUR_MS })), /lifetime/);
  });

  it('refuses a token without iat (its lifetime cannot be known)', async () => {
    const exp = Math.floor(Date.now() / 1000) + 600;
    expectRefused(await listBackups(api, signed({ ...ADMIN, exp }, { noTimestamp: true })), /iat/);
  });
});

describe('npm run token', () => {
  const cli = path.join(root, 'apps', 'api', 'dist', 'cli', 'token.js');
  const run = (env: Record<string, string>, args: string[] = []) =>
    promisify(execFile)(process.execPath, [cli, ...args], {
      // Its own directory: the repository's .env, if any, is not read.
      cwd: path.dirname(cli),
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', JWT_SECRET, ...env },
    });
  const policy = {
    JWT_ISSUER: 'https://panel.example.com',
    JWT_AUDIENCE: 'pgkeep',
    JWT_MAX_LIFETIME_SECONDS: '7200',
  };

  it('prints a token that passes every check of the configured API', async () => {
    const api = await apiWith(policy);
    const { stdout } = await run(policy, ['--sub', 'ops@example.com', '--expires', '1h']);
    const response = await listBackups(api, stdout.trim());
    expect(response.statusCode, response.body).toBe(200);
  });

  it('refuses to print a token that would outlive JWT_MAX_LIFETIME_SECONDS', async () => {
    const failed = await run(policy, ['--expires', '3h']).then(
      () => undefined,
      (error: { code: number; stderr: string; stdout: string }) => error,
    );
    expect(failed?.code).toBe(1);
    expect(failed?.stderr).toMatch(/JWT_MAX_LIFETIME_SECONDS/);
    expect(failed?.stdout).toBe('');
  });
});

describe('repeated authentication failures from one address (AUTH_FAILURE_LIMIT)', () => {
  const LIMIT = 5;
  let api: TestApi;
  beforeAll(async () => {
    api = await apiWith({
      AUTH_FAILURE_LIMIT: String(LIMIT),
      AUTH_FAILURE_WINDOW_MS: '60000',
    });
  });
  const valid = () => signed(ADMIN, { expiresInMs: HOUR_MS });

  it('answers 429 with Retry-After from the failure after the limit, for that address only', async () => {
    const attacker = '10.1.0.1';
    for (let i = 1; i <= LIMIT; i += 1) {
      expectRefused(await listBackups(api, 'garbage', attacker), /not valid/);
    }
    const blocked = await listBackups(api, 'garbage', attacker);
    expect(blocked.statusCode, blocked.body).toBe(429);
    expect(json(blocked).error.code).toBe('TOO_MANY_AUTH_FAILURES');
    const retryAfter = Number(blocked.headers['retry-after']);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);

    // The address stays refused until the window ends, even with a good token (a guess that
    // happens to be right must not tell itself apart)...
    const goodFromAttacker = await listBackups(api, valid(), attacker);
    expect(goodFromAttacker.statusCode, goodFromAttacker.body).toBe(429);
    expect(goodFromAttacker.headers['retry-after']).toBeDefined();
    // ...while another address is served as usual.
    const other = await listBackups(api, valid(), '10.1.0.2');
    expect(other.statusCode, other.body).toBe(200);
    const otherRefused = await listBackups(api, 'garbage', '10.1.0.2');
    expect(otherRefused.statusCode).toBe(401);
  });

  it('counts only failures: many authorized requests do not use up the limit', async () => {
    const client = '10.2.0.1';
    for (let i = 0; i < LIMIT * 4; i += 1) {
      const response = await listBackups(api, valid(), client);
      expect(response.statusCode, response.body).toBe(200);
    }
    for (let i = 1; i <= LIMIT; i += 1) {
      expect((await listBackups(api, undefined, client)).statusCode).toBe(401);
    }
    expect((await listBackups(api, undefined, client)).statusCode).toBe(429);
  });

  it('does not count an expired token (a good signature is no guess)', async () => {
    // A panel polling with one admin's expired token must not lock out every admin behind it.
    const client = '10.2.1.1';
    const expired = createSigner({
      key: JWT_SECRET,
      algorithm: 'HS256',
      expiresIn: 60_000,
      clockTimestamp: Date.now() - HOUR_MS,
    })(ADMIN);
    for (let i = 0; i < LIMIT * 2; i += 1) {
      expectRefused(await listBackups(api, expired, client), /expired/);
    }
    expect((await listBackups(api, valid(), client)).statusCode).toBe(200);
  });

  it('counts refused board sign-ins of the same address', async () => {
    const client = '10.3.0.1';
    const signIn = (token: string) =>
      api.app.inject({
        method: 'POST',
        url: '/admin/login',
        remoteAddress: client,
        payload: { token },
      });
    for (let i = 1; i <= LIMIT; i += 1) {
      const response = await signIn('garbage');
      expect(response.statusCode, response.body).toBe(401);
    }
    const blocked = await signIn('garbage');
    expect(blocked.statusCode, blocked.body).toBe(429);
    expect(blocked.headers['retry-after']).toBeDefined();
    expect((await signIn(valid())).statusCode).toBe(429);
    expect((await listBackups(api, valid(), client)).statusCode).toBe(429);
  });

  it('lets the address in again once the window has passed', async () => {
    const short = await apiWith({ AUTH_FAILURE_LIMIT: '1', AUTH_FAILURE_WINDOW_MS: '1000' });
    const client = '10.4.0.1';
    expect((await listBackups(short, 'garbage', client)).statusCode).toBe(401);
    expect((await listBackups(short, 'garbage', client)).statusCode).toBe(429);
    await vi.waitFor(
      async () => {
        const response = await listBackups(short, valid(), client);
        expect(response.statusCode, response.body).toBe(200);
      },
      { timeout: 5_000, interval: 100 },
    );
  });
});
