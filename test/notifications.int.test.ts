import { createHmac, timingSafeEqual } from 'node:crypto';
import { stat, truncate } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { enqueue } from '@pgkeep/queue';
import { Redis } from 'ioredis';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { type PolledJob, postJob, startApi, type TestApi, waitForJob } from './support/api.js';
import { createTestEnv, type TestEnv, withClient } from './support/test-env.js';
import { startWorker, type WorkerProcess } from './support/worker-process.js';

/**
 * Notifications as an operator receives them: a real worker process tells a local webhook
 * receiver and a local SMTP server about the jobs it ends, and a receiver that fails or hangs
 * never fails or holds up a job.
 */

const webhookSecret = 'whsec-integration-0123456789';
const pathToken = 'T0TOKEN/B0TOKEN/xyzPathSecret';

interface Post {
  at: number;
  headers: IncomingMessage['headers'];
  raw: string;
  body: { event: string; jobId: string; [field: string]: unknown };
}

interface Mail {
  to: string[];
  raw: string;
}

const servers: { close(): Promise<void> }[] = [];

/** node:http on 127.0.0.1:0; `answer` decides what each request gets (or nothing, for now). */
async function startReceiver(answer: (response: ServerResponse) => void = ok) {
  const posts: Post[] = [];
  const held = new Set<ServerResponse>();
  const server: Server = createServer((request, response) => {
    let raw = '';
    request.setEncoding('utf8');
    request.on('data', (chunk: string) => {
      raw += chunk;
    });
    request.on('end', () => {
      posts.push({ at: Date.now(), headers: request.headers, raw, body: JSON.parse(raw) });
      held.add(response);
      response.on('close', () => held.delete(response));
      receiver.answer(response);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const receiver = {
    url: `http://127.0.0.1:${port}/hooks/${pathToken}`,
    posts,
    answer,
    /** From now on answer with `next`, including the requests held so far. */
    switchTo(next: (response: ServerResponse) => void) {
      receiver.answer = next;
      for (const response of held) next(response);
    },
  };
  servers.push({
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  });
  return receiver;
}

function ok(response: ServerResponse) {
  response.statusCode = 204;
  response.end();
}
function serverError(response: ServerResponse) {
  response.statusCode = 500;
  response.end('down for maintenance');
}
function hold() {
  // no answer until the test says so
}

/** smtp-server on 127.0.0.1:0, plain SMTP (no STARTTLS), no login, keeping every message. */
async function startSmtp(options: SMTPServerOptions = {}) {
  const mails: Mail[] = [];
  const server = new SMTPServer({
    secure: false,
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onData(stream, session, callback) {
      let raw = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        raw += chunk;
      });
      stream.on('end', () => {
        mails.push({ to: session.envelope.rcptTo.map((rcpt) => rcpt.address), raw });
        callback();
      });
    },
    ...options,
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push({ close: () => new Promise<void>((resolve) => server.close(() => resolve())) });
  const { port } = (server as unknown as { server: { address(): AddressInfo } }).server.address();
  return { port, mails };
}

function validSignature(post: Post): boolean {
  const timestamp = post.headers['x-pgkeep-timestamp'];
  const signature = post.headers['x-pgkeep-signature'];
  if (typeof timestamp !== 'string' || typeof signature !== 'string') return false;
  const expected = `sha256=${createHmac('sha256', webhookSecret).update(`${timestamp}.${post.raw}`).digest('hex')}`;
  return (
    expected.length === signature.length &&
    timingSafeEqual(Buffer.from(expected), Buffer.from(signature)) &&
    Math.abs(Number(timestamp) - Date.now() / 1000) < 300
  );
}

let env: TestEnv;
let api: TestApi;
let redis: Redis;
let worker: WorkerProcess | undefined;

beforeAll(async () => {
  env = await createTestEnv('notify');
  await withClient(env.databaseUrl, (client) =>
    client.query(`CREATE TABLE "User" (id serial PRIMARY KEY, email text NOT NULL);
                  INSERT INTO "User" (email) SELECT 'u' || g || '@example.com' FROM generate_series(1, 50) g;`),
  );
  api = await startApi(env.env);
  redis = new Redis(env.redisUrl);
});

afterEach(async () => {
  await worker?.stop();
  worker = undefined;
  for (const server of servers.splice(0)) await server.close();
});

afterAll(async () => {
  redis?.disconnect();
  await api?.close();
  await env?.cleanup();
});

function notifyEnv(
  webhookUrl: string,
  smtpPort: number,
  overrides: Record<string, string> = {},
): Record<string, string> {
  return {
    ...env.env,
    NOTIFY_WEBHOOK_URL: webhookUrl,
    NOTIFY_WEBHOOK_SECRET: webhookSecret,
    NOTIFY_SMTP_HOST: '127.0.0.1',
    NOTIFY_SMTP_PORT: String(smtpPort),
    NOTIFY_EMAIL_FROM: 'pgkeep <backups@example.com>',
    NOTIFY_EMAIL_TO: 'ops@example.com,dba@example.com',
    ...overrides,
  };
}

/** A table backup of a table that is not there: the worker's pg_dump refuses it, not retried. */
function enqueueFailingBackup(): Promise<string> {
  return enqueue(api.services.queues, api.config, 'backup', {
    tables: ['Gone'],
    format: 'custom',
    compression: 'zstd',
    label: null,
    type: 'manual',
    requestedBy: 'admin@example.com',
    requestedAt: new Date().toISOString(),
  });
}

/** The notification counters in `{<QUEUE_PREFIX>}:pgkeep-metrics`, less those at `since`. */
async function notificationCounts(
  since: Record<string, number> = {},
): Promise<Record<string, number>> {
  const hash = await redis.hgetall(`{${env.name}}:pgkeep-metrics`);
  return Object.fromEntries(
    Object.entries(hash)
      .filter(([field]) => field.startsWith('notifications_'))
      .map(([field, value]) => [field, Number(value) - (since[field] ?? 0)])
      .filter(([, value]) => value !== 0),
  );
}

function loggedText(from: WorkerProcess): string {
  return `${from.lines.map((line) => JSON.stringify(line)).join('\n')}\n${from.stderr.join('')}`;
}

describe('notifications of finished jobs', () => {
  it('a failed backup gives one signed webhook POST and one email naming the error; a success gives none by default', async () => {
    const receiver = await startReceiver();
    const smtp = await startSmtp();
    const counted = await notificationCounts();
    worker = await startWorker(notifyEnv(receiver.url, smtp.port));

    const succeeded = await postJob(api, '/api/backup', {});
    expect((await waitForJob(api, succeeded)).state).toBe('completed');
    const failed = await enqueueFailingBackup();
    const job = await waitForJob(api, failed);
    expect(job.state).toBe('failed');
    expect(job.error?.code).toBe('TABLE_NOT_FOUND');

    await vi.waitFor(
      () => {
        expect(receiver.posts).toHaveLength(1);
        expect(smtp.mails).toHaveLength(1);
      },
      { timeout: 15_000, interval: 50 },
    );
    const post = receiver.posts[0] as Post;
    expect(validSignature(post)).toBe(true);
    expect(post.headers['content-type']).toBe('application/json');
    expect(post.body).toMatchObject({
      event: 'backup.failed',
      outcome: 'failure',
      jobName: 'backup',
      jobId: failed,
      scheduled: false,
      attemptsMade: 1,
      database: env.name,
      error: { code: 'TABLE_NOT_FOUND', message: 'table not found: Gone' },
      requestedBy: 'admin@example.com',
      startedAt: job.startedAt,
      finishedAt: job.finishedAt,
    });
    expect(post.body.text).toContain('[TABLE_NOT_FOUND] table not found: Gone');

    const mail = smtp.mails[0] as Mail;
    expect(mail.to).toEqual(['ops@example.com', 'dba@example.com']);
    expect(mail.raw).toContain('Subject: [pgkeep] backup failed: TABLE_NOT_FOUND');
    expect(mail.raw).toContain(failed);

    // Each delivery is logged once and counted; the success before it was not announced.
    await vi.waitFor(async () =>
      expect(await notificationCounts(counted)).toEqual({
        'notifications_sent_total:webhook': 1,
        'notifications_sent_total:email': 1,
      }),
    );
    const running = worker;
    const sent = () => running.lines.filter((line) => line.msg === 'notification sent');
    await vi.waitFor(() => expect(sent()).toHaveLength(2));
    expect(sent().map((line) => [line.channel, line.jobId])).toEqual(
      expect.arrayContaining([
        ['webhook', failed],
        ['email', failed],
      ]),
    );
    expect(receiver.posts.some((p) => p.body.jobId === succeeded)).toBe(false);
  });

  it('with NOTIFY_ON=always a successful backup is announced too, naming its file', async () => {
    const receiver = await startReceiver();
    const smtp = await startSmtp();
    worker = await startWorker(notifyEnv(receiver.url, smtp.port, { NOTIFY_ON: 'always' }));

    const jobId = await postJob(api, '/api/backup', { label: 'nightly by hand' });
    const job = await waitForJob(api, jobId);
    expect(job.state).toBe('completed');
    const manifest = job.result as { id: string; filename: string };

    await vi.waitFor(
      () => {
        expect(receiver.posts).toHaveLength(1);
        expect(smtp.mails).toHaveLength(1);
      },
      { timeout: 15_000, interval: 50 },
    );
    const post = receiver.posts[0] as Post;
    expect(validSignature(post)).toBe(true);
    expect(post.body).toMatchObject({
      event: 'backup.succeeded',
      outcome: 'success',
      jobId,
      backupId: manifest.id,
      filename: manifest.filename,
      error: null,
    });
    expect(post.body.text).toContain(manifest.filename);
    expect((smtp.mails[0] as Mail).raw).toContain(
      `Subject: [pgkeep] backup succeeded: ${manifest.id}`,
    );
  });

  it('a verify that finds the backup bad is announced as a failure naming the failed checks', async () => {
    const receiver = await startReceiver();
    const smtp = await startSmtp();
    worker = await startWorker(notifyEnv(receiver.url, smtp.port));
    const made = await waitForJob(api, await postJob(api, '/api/backup', {}));
    expect(made.state).toBe('completed');
    const manifest = made.result as { id: string; filename: string };
    // Cut short behind pgkeep's back: the checksum no longer matches.
    const file = path.join(env.backupDir, manifest.filename);
    await truncate(file, Math.floor((await stat(file)).size / 2));

    const jobId = await postJob(api, `/api/backup/${manifest.id}/verify`, {});
    const job = await waitForJob(api, jobId);
    expect(job.state).toBe('failed');
    expect(job.error?.code).toBe('VERIFY_FAILED');

    await vi.waitFor(
      () => {
        expect(receiver.posts).toHaveLength(1);
        expect(smtp.mails).toHaveLength(1);
      },
      { timeout: 15_000, interval: 50 },
    );
    const post = receiver.posts[0] as Post;
    expect(validSignature(post)).toBe(true);
    expect(post.body).toMatchObject({
      event: 'verify.failed',
      outcome: 'failure',
      jobName: 'verify',
      jobId,
      attemptsMade: 1,
      backupId: manifest.id,
      error: { code: 'VERIFY_FAILED', message: job.error?.message },
    });
    expect(post.body.text).toContain(`[VERIFY_FAILED] backup ${manifest.id} failed verification`);
    expect(post.body.text).toContain('sha256: ');
    const mail = smtp.mails[0] as Mail;
    expect(mail.raw).toContain('Subject: [pgkeep] verify failed: VERIFY_FAILED');
    expect(mail.raw).toContain('sha256: ');
  });

  it('a receiver that hangs and then answers 500, and an SMTP server that refuses, neither fail nor hold up a job', async () => {
    const receiver = await startReceiver(hold);
    let refused = 0;
    const smtp = await startSmtp({
      onRcptTo(_address, _session, callback) {
        refused += 1;
        callback(Object.assign(new Error('mailbox busy, try later'), { responseCode: 451 }));
      },
    });
    const counted = await notificationCounts();
    worker = await startWorker(
      notifyEnv(receiver.url, smtp.port, {
        NOTIFY_ON: 'always',
        NOTIFY_RETRIES: '2',
        NOTIFY_RETRY_DELAY_MS: '100',
        NOTIFY_TIMEOUT_MS: '60000',
      }),
    );

    // The first job's webhook request is held open: the job has completed regardless, and the
    // worker goes on to the next job while that notification is still in flight.
    const first = await postJob(api, '/api/backup', {});
    expect(await waitForJob(api, first)).toMatchObject({ state: 'completed', error: null });
    await vi.waitFor(() => expect(receiver.posts.map((p) => p.body.jobId)).toContain(first), {
      timeout: 15_000,
      interval: 50,
    });
    const second = await postJob(api, '/api/backup', {});
    const secondJob: PolledJob = await waitForJob(api, second);
    expect(secondJob).toMatchObject({ state: 'completed', error: null, attemptsMade: 1 });
    expect(receiver.posts.filter((p) => p.body.jobId === first)).toHaveLength(1);
    expect(
      (await notificationCounts(counted))['notifications_failed_total:webhook'],
    ).toBeUndefined();

    // Now every answer is a 500: each notification is tried three times, then given up.
    receiver.switchTo(serverError);
    await vi.waitFor(
      async () =>
        expect(await notificationCounts(counted)).toEqual({
          'notifications_failed_total:webhook': 2,
          'notifications_failed_total:email': 2,
        }),
      { timeout: 20_000, interval: 100 },
    );
    for (const jobId of [first, second]) {
      const attempts = receiver.posts.filter((p) => p.body.jobId === jobId);
      expect(attempts).toHaveLength(3);
      expect(new Set(attempts.map((p) => p.headers['x-pgkeep-delivery'])).size).toBe(1);
      expect(attempts.every(validSignature)).toBe(true);
    }
    // Two jobs, three attempts each, two recipients refused in each.
    expect(refused).toBe(2 * 3 * 2);
    const running = worker;
    // Log lines come over a pipe: they may trail the counters a little.
    await vi.waitFor(() =>
      expect(running.lines.filter((line) => line.msg === 'notification failed')).toHaveLength(4),
    );
    const failures = running.lines.filter((line) => line.msg === 'notification failed');
    expect(failures.map((line) => [line.channel, line.jobId, line.level])).toEqual(
      expect.arrayContaining([
        ['webhook', first, 50],
        ['webhook', second, 50],
        ['email', first, 50],
        ['email', second, 50],
      ]),
    );
    expect(failures.find((line) => line.channel === 'webhook')).toMatchObject({
      attempts: 3,
      error: 'webhook answered 500',
      target: new URL(receiver.url).origin,
    });
    expect(failures.find((line) => line.channel === 'email')?.error).toContain('451');
    const logged = loggedText(worker);
    expect(logged).not.toContain(webhookSecret);
    expect(logged).not.toContain('xyzPathSecret');
    // Both jobs stay completed.
    for (const jobId of [first, second]) {
      expect(await waitForJob(api, jobId)).toMatchObject({ state: 'completed', error: null });
    }
  });

  it('a graceful shutdown waits a bounded time for notifications in flight, then gives them up', async () => {
    const receiver = await startReceiver(hold);
    const smtp = await startSmtp();
    const counted = await notificationCounts();
    const stopped = await startWorker(
      notifyEnv(receiver.url, smtp.port, {
        NOTIFY_TIMEOUT_MS: '120000',
        NOTIFY_SHUTDOWN_TIMEOUT_MS: '1000',
      }),
    );
    worker = stopped;
    const jobId = await enqueueFailingBackup();
    expect((await waitForJob(api, jobId)).state).toBe('failed');
    await vi.waitFor(() => expect(receiver.posts).toHaveLength(1), { timeout: 15_000 });
    await vi.waitFor(() => expect(smtp.mails).toHaveLength(1), { timeout: 15_000 });

    const stopping = Date.now();
    await stopped.stop();
    const took = Date.now() - stopping;
    expect((await stopped.exited).code).toBe(0);
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(15_000);
    // The last lines may still be in the pipe when the process has exited.
    await vi.waitFor(() =>
      expect(stopped.lines.map((line) => line.msg)).toEqual(
        expect.arrayContaining([
          'waiting for notifications in flight',
          'shutdown: abandoning notifications',
          'worker stopped',
        ]),
      ),
    );
    expect(
      stopped.lines.find((line) => line.msg === 'notification failed' && line.jobId === jobId),
    ).toMatchObject({ channel: 'webhook', error: 'abandoned: the worker is shutting down' });
    expect(await notificationCounts(counted)).toEqual({
      'notifications_failed_total:webhook': 1,
      'notifications_sent_total:email': 1,
    });
  });
});
