import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { deliver, retryDelays } from './deliver.js';
import { buildNotification, type JobNotification } from './notification.js';
import { WebhookNotifier } from './webhook-notifier.js';

const secret = 'whsec-0123456789abcdef';

const notification = buildNotification(
  {
    name: 'backup',
    id: 'backup-14a18557-2d56-4686-81b8-90a76da0081d',
    status: 'failed',
    payload: { requestedBy: 'admin@example.com', requestedAt: '2026-11-26T12:30:00.000Z' },
    failedReason: '[PG_DUMP_FAILED] pg_dump exited 1',
    attemptsMade: 3,
  },
  'failure',
) as JobNotification;

interface Received {
  at: number;
  headers: IncomingMessage['headers'];
  body: string;
}

/** A webhook receiver on 127.0.0.1:<free port> that answers each request as `answer` says. */
async function receiver(answer: (index: number, response: ServerResponse) => void) {
  const received: Received[] = [];
  const server: Server = createServer((request, response) => {
    let body = '';
    request.setEncoding('utf8');
    request.on('data', (chunk: string) => {
      body += chunk;
    });
    request.on('end', () => {
      received.push({ at: Date.now(), headers: request.headers, body });
      answer(received.length - 1, response);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  servers.push(server);
  return { url: `http://127.0.0.1:${port}/hooks/pgkeep`, received };
}

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

function capturingLogger() {
  const lines: Record<string, unknown>[] = [];
  const logger = pino(
    { level: 'debug' },
    { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) },
  );
  return { logger, lines };
}

const status = (code: number) => (_: number, response: ServerResponse) => {
  response.statusCode = code;
  response.end();
};

describe('retryDelays', () => {
  it('waits 1 s, 4 s and 16 s by default: four times longer each time', () => {
    expect(retryDelays({ retries: 3, delayMs: 1_000 })).toEqual([1_000, 4_000, 16_000]);
    expect(retryDelays({ retries: 0, delayMs: 1_000 })).toEqual([]);
  });
});

describe('deliver through a webhook', () => {
  it('retries a receiver that fails twice, then delivers; every attempt is signed', async () => {
    const hook = await receiver((index, response) =>
      status(index < 2 ? 500 : 204)(index, response),
    );
    const { logger, lines } = capturingLogger();
    const result = await deliver(
      new WebhookNotifier({ url: hook.url, secret }),
      notification,
      { retries: 3, delayMs: 50, timeoutMs: 2_000 },
      { signal: new AbortController().signal, logger },
    );
    expect(result).toEqual({ ok: true, attempts: 3 });
    expect(hook.received).toHaveLength(3);
    const [first, second, third] = hook.received as [Received, Received, Received];
    // 50 ms, then 200 ms: the waits grow fourfold.
    expect(second.at - first.at).toBeGreaterThanOrEqual(45);
    expect(third.at - second.at).toBeGreaterThanOrEqual(195);
    for (const request of hook.received) {
      expect(request.headers['content-type']).toBe('application/json');
      expect(request.headers['x-pgkeep-event']).toBe('backup.failed');
      expect(request.headers['x-pgkeep-delivery']).toBe(first.headers['x-pgkeep-delivery']);
      const timestamp = request.headers['x-pgkeep-timestamp'] as string;
      expect(Math.abs(Number(timestamp) - Date.now() / 1000)).toBeLessThan(60);
      const expected = createHmac('sha256', secret).update(`${timestamp}.${request.body}`);
      expect(request.headers['x-pgkeep-signature']).toBe(`sha256=${expected.digest('hex')}`);
      expect(JSON.parse(request.body)).toEqual(notification);
    }
    const retries = lines.filter((line) => line.msg === 'notification attempt failed, retrying');
    expect(retries.map((line) => [line.attempt, line.retryInMs, line.error])).toEqual([
      [1, 50, 'webhook answered 500'],
      [2, 200, 'webhook answered 500'],
    ]);
  });

  it('gives up after the last retry with the last answer as the error', async () => {
    const hook = await receiver(status(503));
    const result = await deliver(
      new WebhookNotifier({ url: hook.url }),
      notification,
      { retries: 2, delayMs: 10, timeoutMs: 2_000 },
      { signal: new AbortController().signal, logger: capturingLogger().logger },
    );
    expect(result).toMatchObject({ ok: false, attempts: 3, abandoned: false });
    expect(!result.ok && result.error.message).toBe('webhook answered 503');
    expect(hook.received).toHaveLength(3);
    // Without a secret: unsigned, still timestamped.
    expect(hook.received[0]?.headers['x-pgkeep-signature']).toBeUndefined();
    expect(hook.received[0]?.headers['x-pgkeep-timestamp']).toMatch(/^\d+$/);
  });

  it.each([400, 404, 302])('does not retry a %i answer', async (code) => {
    const hook = await receiver((_, response) => {
      response.statusCode = code;
      if (code === 302) response.setHeader('location', 'http://127.0.0.1:1/elsewhere');
      response.end();
    });
    const result = await deliver(
      new WebhookNotifier({ url: hook.url, secret }),
      notification,
      { retries: 3, delayMs: 10, timeoutMs: 2_000 },
      { signal: new AbortController().signal, logger: capturingLogger().logger },
    );
    expect(result).toMatchObject({ ok: false, attempts: 1 });
    expect(!result.ok && result.error.message).toBe(`webhook answered ${code}`);
    expect(hook.received).toHaveLength(1);
  });

  it('ends an attempt that gets no answer within the timeout, and retries it', async () => {
    const hook = await receiver(() => {
      // never answers
    });
    const started = Date.now();
    const result = await deliver(
      new WebhookNotifier({ url: hook.url }),
      notification,
      { retries: 1, delayMs: 10, timeoutMs: 200 },
      { signal: new AbortController().signal, logger: capturingLogger().logger },
    );
    expect(result).toMatchObject({ ok: false, attempts: 2 });
    expect(!result.ok && result.error.message).toBe('timed out after 200 ms');
    expect(hook.received).toHaveLength(2);
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(400);
    expect(elapsed).toBeLessThan(5_000);
  });

  it('retries a refused connection', async () => {
    const hook = await receiver(status(204));
    const closed = servers.pop() as Server;
    await new Promise((resolve) => closed.close(resolve));
    const result = await deliver(
      new WebhookNotifier({ url: hook.url }),
      notification,
      { retries: 1, delayMs: 10, timeoutMs: 2_000 },
      { signal: new AbortController().signal, logger: capturingLogger().logger },
    );
    expect(result).toMatchObject({ ok: false, attempts: 2 });
    expect(!result.ok && result.error.message).toMatch(/^webhook request failed: .*ECONNREFUSED/);
  });

  it('stops waiting for the next retry at once when shutdown aborts it', async () => {
    const hook = await receiver(status(500));
    const shutdown = new AbortController();
    const started = Date.now();
    const delivering = deliver(
      new WebhookNotifier({ url: hook.url }),
      notification,
      { retries: 3, delayMs: 60_000, timeoutMs: 2_000 },
      { signal: shutdown.signal, logger: capturingLogger().logger },
    );
    await expect.poll(() => hook.received.length, { timeout: 5_000, interval: 10 }).toBe(1);
    shutdown.abort();
    const result = await delivering;
    expect(result).toMatchObject({ ok: false, attempts: 1, abandoned: true });
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
