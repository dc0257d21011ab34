import { AppError } from '@pgkeep/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { z } from 'zod';

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
 * `verifyAdminToken` runs the same checks (signature, algorithm, expiry, admin, named user) on
 * a token handed over some other way (the board's sign-in).
 */
export default fp(
  async (app) => {
    app.decorate('requireAdmin', async (request: FastifyRequest) => {
      let payload: unknown;
      try {
        payload = await request.jwtVerify();
      } catch (error) {
        throw tokenRefusal(error);
      }
      request.admin = adminFromClaims(payload).admin;
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
