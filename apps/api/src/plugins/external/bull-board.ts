import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import { AppError, errorStatus } from '@pgkeep/core';
import type { PgkeepQueues } from '@pgkeep/queue';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { adminPaths } from '../app/admin-session.js';
import { quietLogLevel } from '../app/request-log.js';

/**
 * Bull Board at /admin/queues, showing every pgkeep queue, for admins signed in with the board
 * cookie (plugins/app/admin-session.ts).
 *
 * Read-only, twice over: Bull Board's `readOnlyMode` hides its buttons and refuses its own
 * mutating endpoints, and the hook below lets nothing but GET/HEAD through. A retried or added
 * job would skip what the API enforces (a restore's `confirm` equal to the target database,
 * RESTORE_ENABLED, table names checked before queueing, who asked for it): jobs are started
 * and cancelled through the API only.
 *
 * Not wrapped in fastify-plugin on purpose: its hooks must stay inside its own scope.
 */
export default async function bullBoard(
  app: FastifyInstance,
  { queues }: { queues: PgkeepQueues },
) {
  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath(adminPaths.board);
  createBullBoard({
    queues: Object.values(queues).map((queue) => new BullMQAdapter(queue, { readOnlyMode: true })),
    serverAdapter,
    options: {
      uiConfig: {
        boardTitle: 'pgkeep queues',
        miscLinks: [
          { text: 'API docs', url: '/docs' },
          { text: 'Sign out', url: adminPaths.login },
        ],
      },
    },
  });

  // Each page of the board loads a dozen static files: no line for each (request-log.ts).
  app.addHook('onRoute', (route) => {
    if (route.url.startsWith(`${adminPaths.board}/static/`)) route.logLevel = quietLogLevel;
  });
  app.addHook('onRequest', app.requireAdminSession);
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    void reply.header('cache-control', 'no-store').header('x-frame-options', 'DENY');
    if (request.method === 'GET' || request.method === 'HEAD') return;
    const error = new AppError('FORBIDDEN', 'the board is read-only: start jobs through the API');
    return reply.code(errorStatus[error.code]).send({
      success: false,
      error: { code: error.code, message: error.message },
    });
  });
  await app.register(serverAdapter.registerPlugin(), { prefix: adminPaths.board });
}
