import fastifyCookie from '@fastify/cookie';
import fp from 'fastify-plugin';

/**
 * Cookies, for the operators' board only (see plugins/app/admin-session.ts). No secret: the
 * one cookie holds a JWT, which carries its own signature. The API routes never read cookies.
 */
export default fp(
  async (app) => {
    await app.register(fastifyCookie);
  },
  { name: 'cookie' },
);
