import fastifyJwt from '@fastify/jwt';
import type { Config } from '@pgkeep/core';
import fp from 'fastify-plugin';

/**
 * Tokens are the panel's: HS256 with a shared secret, or RS256/ES256 with a public key. The
 * algorithm list is fixed, so `alg: none` and algorithm-swap tokens are refused.
 */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    if (config.JWT_PUBLIC_KEY) {
      await app.register(fastifyJwt, {
        secret: { public: config.JWT_PUBLIC_KEY },
        // cache: a polling panel sends the same token many times a second; expiry is still
        // checked on every use.
        verify: { algorithms: ['RS256', 'ES256'], cache: true },
      });
    } else {
      await app.register(fastifyJwt, {
        secret: config.JWT_SECRET ?? '',
        verify: { algorithms: ['HS256'], cache: true },
      });
    }
  },
  { name: 'jwt' },
);
