import { AppError, type Config } from '@pgkeep/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';

export interface AuthFailures {
  /** Refuses (429, Retry-After) an address that has used up its failures in this window. */
  assertAllowed(request: FastifyRequest, reply: FastifyReply): Promise<void>;
  /**
   * Counts one failed authentication of the request's address and returns what to answer:
   * `refusal` itself, or 429 once this failure is over the limit.
   */
  count(request: FastifyRequest, reply: FastifyReply, refusal: AppError): Promise<AppError>;
}

declare module 'fastify' {
  interface FastifyInstance {
    authFailures: AuthFailures;
  }
}

function tooMany(reply: FastifyReply, ttlMs: number): AppError {
  const seconds = Math.max(1, Math.ceil(ttlMs / 1000));
  void reply.header('retry-after', String(seconds));
  return new AppError(
    'TOO_MANY_AUTH_FAILURES',
    `too many failed authentications from this address; retry in ${seconds} s`,
  );
}

/**
 * AUTH_FAILURE_LIMIT failed authentications per client address within AUTH_FAILURE_WINDOW_MS:
 * the failure after that, and every request of that address until the window ends, get 429
 * without their token being looked at, so a guess that happens to be right cannot be told
 * apart. Only failures count (a polling panel's good requests do not), through
 * @fastify/rate-limit's counters: read before the check, incremented on a failure.
 */
export default fp<{ config: Config }>(
  async (app, { config }) => {
    const limit = config.AUTH_FAILURE_LIMIT;
    if (limit === 0) {
      app.decorate('authFailures', {
        assertAllowed: async () => {},
        count: async (_request, _reply, refusal) => refusal,
      } satisfies AuthFailures);
      return;
    }
    const counter = app.createRateLimit({
      max: limit,
      timeWindow: config.AUTH_FAILURE_WINDOW_MS,
      // The default key: the socket's address (IPv6 by /64). No proxy is trusted, so that
      // X-Forwarded-For cannot pick it; behind a proxy every client shares the proxy's.
    });
    app.decorate('authFailures', {
      async assertAllowed(request, reply) {
        const state = await counter(request, { increment: false });
        if (!state.isAllowed && state.isExceeded) throw tooMany(reply, state.ttl);
      },
      async count(request, reply, refusal) {
        const state = await counter(request);
        if (!state.isAllowed && state.isExceeded) {
          request.log.warn({ ip: request.ip, limit }, 'authentication failures over the limit');
          return tooMany(reply, state.ttl);
        }
        return refusal;
      },
    } satisfies AuthFailures);
  },
  { name: 'auth-failures', dependencies: ['rate-limit'] },
);
