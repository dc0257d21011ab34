import { AppError } from '@pgkeep/core';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { adminPaths, refusalOf } from '../plugins/app/admin-session.js';
import { BODY_PARSING, documented } from '../route-docs.js';
import { okEnvelope } from '../schemas.js';
import { isSignInRefusal, loginPage } from './admin-login-page.js';

const FORM = 'application/x-www-form-urlencoded';

const loginBody = z.object({
  // A cookie holds about 4 KB; a longer token would be dropped by the browser without a word.
  token: z.string().trim().min(1, 'give the admin token').max(3800, 'too long for a cookie'),
});

const sessionView = okEnvelope(
  z.object({ requestedBy: z.string(), expiresAt: z.string().nullable() }),
);

const htmlPage = (description: string) => ({
  description,
  content: { 'text/html': { schema: z.string() } },
});

const seeOther = (description: string) => z.undefined().describe(description);

/**
 * Signing in to and out of the operators' board (see plugins/app/admin-session.ts). JSON in,
 * JSON out for scripts; the sign-in page's form gets redirects (post/redirect/get) instead.
 * Not under /api: these routes take a token in the body, never in a cookie or a header.
 */
export const adminRoutes: FastifyPluginAsyncZod = async (app) => {
  // The page's form posts urlencoded; only this scope accepts it (the API stays JSON only).
  app.addContentTypeParser(FORM, { parseAs: 'string' }, (_request, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });
  app.addHook('onRequest', async (request, reply) => {
    void reply.header('cache-control', 'no-store').header('x-frame-options', 'DENY');
    // A form posted from another site (login CSRF) is refused; SameSite=Strict covers the rest.
    if (request.method === 'POST' && request.headers['sec-fetch-site'] === 'cross-site') {
      throw new AppError('FORBIDDEN', 'cross-site requests are refused');
    }
  });
  const isForm = (contentType: string | undefined) => (contentType ?? '').startsWith(FORM);

  app.get(
    adminPaths.login,
    {
      schema: documented(
        {
          operationId: 'getBoardSignInPage',
          summary: 'The sign-in page of the operators’ board',
          description:
            'An HTML form that posts an admin token to /admin/login; when the board cookie is already good, who is signed in and a sign-out button. `error` names one of the page’s fixed refusal messages.',
          access: 'public',
          errors: [],
        },
        {
          querystring: z.object({ error: z.string().max(40).optional() }),
          response: { 200: htmlPage('a form that posts an admin token to /admin/login') },
        },
      ),
    },
    async (request, reply) => {
      const refusal = isSignInRefusal(request.query.error) ? request.query.error : null;
      return reply.type('text/html').send(loginPage(app.adminSessionOf(request), refusal));
    },
  );

  app.post(
    adminPaths.login,
    {
      bodyLimit: 16 * 1024,
      schema: {
        ...documented(
          {
            operationId: 'signInToBoard',
            summary: 'Sign in to the operators’ board',
            description:
              'Checks the admin token like the API does and keeps it in an HttpOnly, SameSite=Strict cookie for /admin, expiring with the token. JSON gets 200 or an error; the page’s form gets 303 to the board, or back to the sign-in page with the reason. A form posted from another site is refused (FORBIDDEN).',
            access: 'public',
            errors: ['UNAUTHORIZED', 'FORBIDDEN', 'TOO_MANY_AUTH_FAILURES'],
          },
          {
            body: loginBody,
            response: {
              200: sessionView,
              303: seeOther('form post: signed in (Location: /admin/queues) or refused'),
            },
          },
        ),
        security: [],
        consumes: ['application/json', FORM],
      },
    },
    async (request, reply) => {
      const form = isForm(request.headers['content-type']);
      try {
        const session = await app.signInAdmin(request, reply, request.body.token);
        if (form) return reply.redirect(adminPaths.board, 303);
        const data = { ...session, expiresAt: session.expiresAt?.toISOString() ?? null };
        return { success: true as const, data, message: 'signed in' };
      } catch (error) {
        if (!form || !(error instanceof AppError)) throw error;
        return reply.redirect(`${adminPaths.login}?error=${refusalOf(error)}`, 303);
      }
    },
  );

  app.post(
    adminPaths.logout,
    {
      bodyLimit: 16 * 1024,
      schema: {
        ...documented(
          {
            operationId: 'signOutOfBoard',
            summary: 'Sign out of the operators’ board',
            description:
              'Clears the board cookie. JSON gets 200; the page’s form gets 303. A form posted from another site is refused (FORBIDDEN).',
            access: 'public',
            errors: ['FORBIDDEN', ...BODY_PARSING],
          },
          {
            response: {
              200: okEnvelope(z.null()),
              303: seeOther('form post: signed out (Location: /admin/login)'),
            },
          },
        ),
        security: [],
      },
    },
    async (request, reply) => {
      app.signOutAdmin(request, reply);
      if (isForm(request.headers['content-type'])) return reply.redirect(adminPaths.login, 303);
      return { success: true as const, data: null, message: 'signed out' };
    },
  );
};
