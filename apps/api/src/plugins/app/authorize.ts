import { AppError } from '@pgkeep/core';
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

/** The claims check shared by the API's Bearer header and the operators' board cookie. */
function adminFromClaims(payload: unknown): { admin: Admin; expiresAt: Date | null } {
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
 * with a valid token that is not an admin's. It reads the Authorization header only, never a
 * cookie: a browser attaches cookies to cross-site requests, headers it does not.
 * A verification is reused for the same Authorization header until the token's `exp` (see
 * authorize-token-cache.ts); the board's cookie always takes the full path.
 * `verifyAdminToken` runs the same checks (signature, algorithm, expiry, admin, named user) on
 * a token handed over some other way (the board's sign-in).
 */
export default fp(
  async (app) => {
    // A polling panel sends the same token many times a second (see authorize-token-cache.ts
    // for what a cached verification may be reused for, and how long).
    const verified = new VerifiedTokenCache<Admin>({
      maxEntries: VERIFIED_TOKENS_KEPT,
      maxAgeMs: VERIFIED_TOKEN_MAX_AGE_MS,
    });
    app.decorate('requireAdmin', async (request: FastifyRequest) => {
      const authorization = request.headers.authorization;
      const known = authorization === undefined ? undefined : verified.get(authorization);
      if (known !== undefined) {
        request.admin = known;
        return;
      }
      let payload: unknown;
      try {
        payload = await request.jwtVerify();
      } catch (error) {
        throw tokenRefusal(error);
      }
      const { admin, expiresAt } = adminFromClaims(payload);
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
      return adminFromClaims(payload);
    });
  },
  { name: 'authorize', dependencies: ['jwt'] },
);
