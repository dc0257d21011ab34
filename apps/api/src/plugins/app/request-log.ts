import { type FastifyReply, type FastifyRequest, LogController } from 'fastify';
import fp from 'fastify-plugin';

/**
 * The error code of each refused request, read from the envelope it was sent: every way an
 * error answer leaves the API (the error handler, the 404 handler, the board's own refusals)
 * writes `{ success: false, error: { code } }`, so the body is the one place that always has it.
 */
const errorCodes = new WeakMap<FastifyReply, string>();

function codeOf(payload: unknown): string | undefined {
  // Error envelopes are a few hundred bytes; anything larger is not one.
  if (typeof payload !== 'string' || payload.length > 64 * 1024) return undefined;
  try {
    const code = (JSON.parse(payload) as { error?: { code?: unknown } } | null)?.error?.code;
    return typeof code === 'string' ? code : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Fastify's request lines, with two changes: the line of a refused request names its error
 * code, and a 5xx answer is a warning. Routes that machines call every few seconds (health
 * probes, the board's static files) take `logLevel: quietLogLevel`: their ordinary lines go,
 * a failing probe or a server error still shows.
 */
export class RequestLogController extends LogController {
  override requestCompleted(
    error: Error | null | undefined,
    request: FastifyRequest,
    reply: FastifyReply,
  ): void {
    if (this.isLogDisabled(request)) return;
    const responseTime = reply.elapsedTime;
    if (error) {
      reply.log.error({ res: reply, err: error, responseTime }, 'request errored');
      return;
    }
    const code = reply.statusCode >= 400 ? errorCodes.get(reply) : undefined;
    const line = { res: reply, responseTime, ...(code ? { code } : {}) };
    if (reply.statusCode >= 500) reply.log.warn(line, 'request completed');
    else reply.log.info(line, 'request completed');
  }
}

/** The `logLevel` of a route whose ordinary requests are not worth a line. */
export const quietLogLevel = 'warn';

export default fp(
  async (app) => {
    app.addHook('onSend', async (_request, reply, payload) => {
      if (reply.statusCode >= 400) {
        const code = codeOf(payload);
        if (code) errorCodes.set(reply, code);
      }
      return payload;
    });
  },
  { name: 'request-log' },
);
