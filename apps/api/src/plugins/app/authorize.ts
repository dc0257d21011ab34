import { AppError, type Config } from '@pgkeep/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { z } from 'zod';
import { VerifiedTokenCache } from './authorize-token-cache.js';

/** Claims the panel puts in its tokens; anything else in the token is ignored. */
const claimsSchema = z.object({
  sub: z.union([z.string(), z.number()]).optional(),
  userId: z.union([z.string(), z.number()]).optional(),
  id: z.union([z.string(), z.number()]).optional(),
  role: z.string().optional(),
  roles: z.array(z.string()).optional(),
  permissions: z.array(z.string()).optional(),
});

export const ADMIN_ROLE = 'SUPER_ADMIN';
export const BACKUP_PERMISSION = 'backup:manage';

export interface Admin {
  requestedBy: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    admin?: Admin;
  }
  interface FastifyInstance {
    requireAdmin: (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
    verifyAdminToken: (token: string) => { admin: Admin; expiresAt: Date | null };
    /** verifyAdminToken for a token a request handed over: its failures count (auth-failures). */
    authenticateAdminToken: (
      request: FastifyRequest,
      reply: FastifyReply,
      token: string,
    ) => Promise<{ admin: Admin; expiresAt: Date | null }>;
  }
}

export function isAdmin(claims: z.infer<typeof claimsSchema>): boolean {
  return (
    claims.role === ADMIN_ROLE ||
    (claims.roles ?? []).includes(ADMIN_ROLE) ||
    (claims.permissions ?? []).includes(BACKUP_PERMISSION)
  );
}

export const TOKEN_EXPIRED = 'the token has expired';

/** Admin tokens whose verification is kept (per API process), and for how long at most. */
export const VERIFIED_TOKENS_KEPT = 1_000;
export const VERIFIED_TOKEN_MAX_AGE_MS = 10 * 60_000;

/** What a refused token earns: 401 with a reason its sender can act on. */
function tokenRefusal(error: unknown): AppError {
  const code = (error as { code?: string }).code ?? '';
  const reason = code.includes('EXPIRED')
    ? TOKEN_EXPIRED
    : code.includes('NO_AUTHORIZATION')
      ? 'a Bearer token is required'
      : 'the token is not valid';
  return new AppError('UNAUTHORIZED', reason);
}

/**
 * A token refused although its signature was good (expired, not valid yet) is no guess: it
 * does not count as a failed authentication. Otherwise a panel polling with one admin's
 * expired token would lock out every admin behind the panel's address.
 */
function signatureWasGood(error: unknown): boolean {
  const code = (error as { code?: string }).code ?? '';
  return code.includes('EXPIRED') || code.includes('INACTIVE');
}

/** What a token must carry besides its signature (JWT_REQUIRE_EXP, JWT_ISSUER, ...). */
export interface TokenPolicy {
  requireExp: boolean;
  issuer: string | undefined;
  audience: string | undefined;
  maxLifetimeSeconds: number | undefined;
}

export function tokenPolicy(config: Config): TokenPolicy {
  return {
    requireExp: config.JWT_REQUIRE_EXP,
    issuer: config.JWT_ISSUER,
    audience: config.JWT_AUDIENCE,
    maxLifetimeSeconds: config.JWT_MAX_LIFETIME_SECONDS,
  };
}

/** The policy's checks on verified claims; the first that fails is the refusal. */
function assertPolicy(payload: Record<string, unknown>, policy: TokenPolicy): void {
  const refuse = (reason: string) => {
    throw new AppError('UNAUTHORIZED', reason);
  };
  const { exp, iat, iss, aud } = payload;
  if ((policy.requireExp || policy.maxLifetimeSeconds !== undefined) && typeof exp !== 'number') {
    refuse('the token has no expiry (exp): only tokens that expire are accepted');
  }
  if (policy.issuer !== undefined && iss !== policy.issuer) {
    refuse('the token’s issuer (iss) is not the accepted one');
  }
  if (policy.audience !== undefined) {
    const audiences = Array.isArray(aud) ? aud : [aud];
    if (!audiences.includes(policy.audience)) {
      refuse('the token’s audience (aud) does not include this service');
    }
  }
  if (policy.maxLifetimeSeconds !== undefined) {
    if (typeof iat !== 'number') {
      refuse('the token has no issue time (iat), so its lifetime cannot be checked');
    } else if ((exp as number) - iat > policy.maxLifetimeSeconds) {
      refuse(`the token’s lifetime (exp - iat) is over the ${policy.maxLifetimeSeconds} s allowed`);
    }
  }
}

/** The claims check shared by the API's Bearer header and the operators' board cookie. */
function adminFromClaims(
  payload: unknown,
  policy: TokenPolicy,
): { admin: Admin; expiresAt: Date | null } {
  if (typeof payload !== 'object' || payload === null) {
    throw new AppError('UNAUTHORIZED', 'the token is not valid');
  }
  assertPolicy(payload as Record<string, unknown>, policy);
  const claims = claimsSchema.safeParse(payload);
  const subject = claims.success
    ? (claims.data.sub ?? claims.data.userId ?? claims.data.id)
    : undefined;
  if (!claims.success || subject === undefined || String(subject).length === 0) {
    throw new AppError('UNAUTHORIZED', 'the token does not name its user');
  }
  if (!isAdmin(claims.data)) {
    throw new AppError(
      'FORBIDDEN',
      `role ${ADMIN_ROLE} or permission ${BACKUP_PERMISSION} required`,
    );
  }
  const exp = (payload as { exp?: unknown }).exp;
  return {
    admin: { requestedBy: String(subject).slice(0, 200) },
    expiresAt: typeof exp === 'number' ? new Date(exp * 1000) : null,
  };
}

/**
 * `requireAdmin` (an onRequest hook of the API routes): 401 without a valid Bearer token, 403
 * with a valid token that is not an admin's, 429 for an address with too many failures
 * (auth-failures.ts). It reads the Authorization header only, never a cookie: a browser
 * attaches cookies to cross-site requests, headers it does not.
 * A verification is reused for the same Authorization header until the token's `exp` (see
 * authorize-token-cache.ts); the board's cookie always takes the full path.
 * `verifyAdminToken` runs the same checks (signature, algorithm, expiry, policy, admin, named
 * user) on a token handed over some other way (the board's sign-in).
 */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    const policy = tokenPolicy(config);
    // A polling panel sends the same token many times a second (see authorize-token-cache.ts
    // for what a cached verification may be reused for, and how long).
    const verified = new VerifiedTokenCache<Admin>({
      maxEntries: VERIFIED_TOKENS_KEPT,
      maxAgeMs: VERIFIED_TOKEN_MAX_AGE_MS,
    });

    /** Signature first (a failure there counts against the address), then the claims. */
    async function authenticate(
      request: FastifyRequest,
      reply: FastifyReply,
      verify: () => unknown,
    ): Promise<{ admin: Admin; expiresAt: Date | null }> {
      await app.authFailures.assertAllowed(request, reply);
      let payload: unknown;
      try {
        payload = await verify();
      } catch (error) {
        const refusal = tokenRefusal(error);
        throw signatureWasGood(error)
          ? refusal
          : await app.authFailures.count(request, reply, refusal);
      }
      return adminFromClaims(payload, policy);
    }

    app.decorate('requireAdmin', async (request: FastifyRequest, reply: FastifyReply) => {
      const authorization = request.headers.authorization;
      const known = authorization === undefined ? undefined : verified.get(authorization);
      if (known !== undefined) {
        await app.authFailures.assertAllowed(request, reply);
        request.admin = known;
        return;
      }
      const { admin, expiresAt } = await authenticate(request, reply, () => request.jwtVerify());
      if (authorization !== undefined) verified.set(authorization, Object.freeze(admin), expiresAt);
      request.admin = admin;
    });
    app.decorate('verifyAdminToken', (token: string) => {
      let payload: unknown;
      try {
        payload = app.jwt.verify(token);
      } catch (error) {
        throw tokenRefusal(error);
      }
      return adminFromClaims(payload, policy);
    });
    app.decorate(
      'authenticateAdminToken',
      (request: FastifyRequest, reply: FastifyReply, token: string) =>
        authenticate(request, reply, () => app.jwt.verify(token)),
    );
  },
  { name: 'authorize', dependencies: ['jwt', 'auth-failures'] },
);
