import type { CookieSerializeOptions } from '@fastify/cookie';
import { AppError, type Config, errorStatus } from '@pgkeep/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { TOKEN_EXPIRED } from './authorize.js';

/** Where the operators' pages live; the cookie is sent to these paths and no others. */
export const adminPaths = {
  root: '/admin',
  login: '/admin/login',
  logout: '/admin/logout',
  board: '/admin/queues',
} as const;

export const ADMIN_COOKIE = 'pgkeep_admin';

/** Why a browser was sent back to the sign-in page; the page words it (nothing is echoed). */
export type SignInRefusal = 'signed-out' | 'expired' | 'invalid' | 'forbidden' | 'too-many';

export function refusalOf(error: AppError): SignInRefusal {
  if (error.code === 'FORBIDDEN') return 'forbidden';
  if (error.code === 'TOO_MANY_AUTH_FAILURES') return 'too-many';
  return error.message === TOKEN_EXPIRED ? 'expired' : 'invalid';
}

export interface AdminSession {
  requestedBy: string;
  /** When the token, and so the cookie, stops being good; null for a token without `exp`. */
  expiresAt: Date | null;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Checks a token like the API does, then keeps it in the board's cookie. */
    signInAdmin: (
      request: FastifyRequest,
      reply: FastifyReply,
      token: string,
    ) => Promise<AdminSession>;
    signOutAdmin: (request: FastifyRequest, reply: FastifyReply) => void;
    /** The board cookie's session, or null when there is none or it no longer passes. */
    adminSessionOf: (request: FastifyRequest) => AdminSession | null;
    /**
     * onRequest hook of the board: no valid admin cookie → a page request is redirected to the
     * sign-in page (303), anything else gets 401/403 with the error envelope.
     */
    requireAdminSession: (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
  }
}

/**
 * The operators' board is opened in a browser, which sends no Bearer header: the admin signs
 * in once with a token, which is kept in an HttpOnly, SameSite=Strict cookie scoped to /admin
 * and checked again on every request (signature, expiry, admin, named user). The cookie never
 * authorizes /api/*: those routes read the Authorization header only (authorize.ts), so a
 * cross-site form cannot drive the JSON API with an operator's cookie.
 */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    const cookieOptions = (request: FastifyRequest): CookieSerializeOptions => ({
      path: adminPaths.root,
      httpOnly: true,
      sameSite: 'strict',
      // `auto`: Secure when the request came over https. Behind a proxy that ends TLS the API
      // sees http, so such deployments set ADMIN_COOKIE_SECURE=true.
      secure:
        config.ADMIN_COOKIE_SECURE === 'auto'
          ? request.protocol === 'https'
          : config.ADMIN_COOKIE_SECURE,
    });

    app.decorate(
      'signInAdmin',
      async (request: FastifyRequest, reply: FastifyReply, token: string) => {
        const { admin, expiresAt } = await app.authenticateAdminToken(request, reply, token);
        // The cookie dies with the token; a token without `exp` gives a browser-session cookie.
        void reply.setCookie(ADMIN_COOKIE, token, {
          ...cookieOptions(request),
          ...(expiresAt ? { expires: expiresAt } : {}),
        });
        return { requestedBy: admin.requestedBy, expiresAt };
      },
    );

    app.decorate('signOutAdmin', (request: FastifyRequest, reply: FastifyReply) => {
      void reply.clearCookie(ADMIN_COOKIE, cookieOptions(request));
    });

    app.decorate('adminSessionOf', (request: FastifyRequest) => {
      const token = request.cookies[ADMIN_COOKIE];
      if (!token) return null;
      try {
        const { admin, expiresAt } = app.verifyAdminToken(token);
        return { requestedBy: admin.requestedBy, expiresAt };
      } catch {
        return null;
      }
    });

    app.decorate('requireAdminSession', async (request: FastifyRequest, reply: FastifyReply) => {
      const token = request.cookies[ADMIN_COOKIE];
      let refusal: AppError;
      if (token) {
        try {
          request.admin = (await app.authenticateAdminToken(request, reply, token)).admin;
          return;
        } catch (error) {
          refusal = error instanceof AppError ? error : new AppError('UNAUTHORIZED', 'not valid');
          // A cookie that no longer passes is of no use to anyone: drop it. (One refused only
          // because its address is locked out may still be good.)
          if (refusal.code !== 'TOO_MANY_AUTH_FAILURES') app.signOutAdmin(request, reply);
        }
      } else {
        refusal = new AppError('UNAUTHORIZED', `sign in at ${adminPaths.login} first`);
      }
      const wantsPage =
        (request.method === 'GET' || request.method === 'HEAD') &&
        (request.headers.accept ?? '').includes('text/html');
      if (wantsPage) {
        const reason = token ? refusalOf(refusal) : 'signed-out';
        return reply.redirect(`${adminPaths.login}?error=${reason}`, 303);
      }
      // Sent here rather than thrown: the board's plugin has an error handler of its own.
      return reply.code(errorStatus[refusal.code]).send({
        success: false,
        error: { code: refusal.code, message: refusal.message },
      });
    });
  },
  { name: 'admin-session', dependencies: ['authorize', '@fastify/cookie'] },
);
