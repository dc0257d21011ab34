import { createHash, timingSafeEqual } from 'node:crypto';
import type { Config } from '@pgkeep/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { documented } from '../route-docs.js';
import type { ApiServices } from '../services/api-services.js';
import { renderMetrics } from '../services/metrics-service.js';

const digest = (value: string) => createHash('sha256').update(value).digest();

/**
 * Who may scrape: anyone with METRICS_PUBLIC=true; else a Bearer token equal to METRICS_TOKEN
 * (what Prometheus is given: admin JWTs expire) or an admin's JWT. Without either, the same
 * 401/403 as every admin route.
 */
function metricsAccess(app: FastifyInstance, config: Config) {
  const expected = config.METRICS_TOKEN ? digest(config.METRICS_TOKEN) : undefined;
  return async (request: FastifyRequest, reply: FastifyReply) => {
    if (config.METRICS_PUBLIC) return;
    const presented = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '')?.[1];
    // Digests of equal length, so the comparison takes the same time whatever was sent.
    if (expected && presented && timingSafeEqual(digest(presented), expected)) return;
    await app.requireAdmin(request, reply);
  };
}

export const metricsRoutes: FastifyPluginAsyncZod<{ services: ApiServices }> = async (
  app,
  { services },
) => {
  app.get(
    '/metrics',
    {
      schema: documented(
        {
          operationId: 'getMetrics',
          summary: 'Prometheus metrics',
          description:
            'Backups, jobs, queues, workers, targets and point-in-time recovery in the Prometheus text format. Open to anyone with METRICS_PUBLIC=true; else a Bearer token equal to METRICS_TOKEN (for Prometheus) or an admin’s JWT. A source that cannot be read is left out and `pgkeep_metrics_source_up` says which.',
          access: 'admin',
          errors: [],
        },
        {
          response: {
            // Prometheus text, declared by content type so that it is documented and sent as is.
            200: {
              description: 'Prometheus text exposition format',
              content: { 'text/plain': { schema: z.string() } },
            },
          },
        },
      ),
      onRequest: metricsAccess(app, services.config),
    },
    async (_request, reply) => {
      const { contentType, body } = await renderMetrics(services);
      return reply.type(contentType).send(body);
    },
  );
};
