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
  }
}

export function isAdmin(claims: z.infer<typeof claimsSchema>): boolean {
  return (
    claims.role === ADMIN_ROLE ||
    (claims.roles ?? []).includes(ADMIN_ROLE) ||
    (claims.permissions ?? []).includes(BACKUP_PERMISSION)
  );
}

/** A preHandler: 401 without a valid token, 403 with a valid token that is not an admin's. */
export default fp(
  async (app) => {
    app.decorate('requireAdmin', async (request: FastifyRequest) => {
      let payload: unknown;
      try {
        payload = await request.jwtVerify();
      } catch (error) {
        const code = (error as { code?: string }).code ?? '';
        const reason = code.includes('EXPIRED')
          ? 'the token has expired'
          : code.includes('NO_AUTHORIZATION')
            ? 'a Bearer token is required'
            : 'the token is not valid';
        throw new AppError('UNAUTHORIZED', reason);
      }
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
      request.admin = { requestedBy: String(subject).slice(0, 200) };
    });
  },
  { name: 'authorize', dependencies: ['jwt'] },
);
