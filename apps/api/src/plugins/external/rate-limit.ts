import fastifyRateLimit from '@fastify/rate-limit';
import fp from 'fastify-plugin';

/**
 * @fastify/rate-limit, with no route limited by it: only its counters are used, through
 * `createRateLimit`, to count failed authentications per client address (auth-failures.ts).
 * The counters are this process's own (several API processes each count their share).
 */
export default fp(
  async (app) => {
    await app.register(fastifyRateLimit, { global: false });
  },
  { name: 'rate-limit' },
);
