import { loadConfig } from '@pgkeep/core';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createNotifiers, JobNotifications, notifyJobOutcome } from './job-notifications.js';
import type { FinishedJob, JobNotification } from './notification.js';
import {
  type DeliveryOutcome,
  type NotificationCounter,
  redisNotificationCounter,
} from './notification-counter.js';
import { type NotificationChannel, NotificationError, type Notifier } from './notifier.js';
import { WebhookNotifier } from './webhook-notifier.js';

const failedBackup: FinishedJob = {
  name: 'backup',
  id: 'backup-14a18557-2d56-4686-81b8-90a76da0081d',
  status: 'failed',
  payload: { requestedBy: 'admin@example.com', requestedAt: '2026-11-26T12:30:00.000Z' },
  failedReason: '[TABLE_NOT_FOUND] table not found: Gone',
  attemptsMade: 1,
};
const completedBackup: FinishedJob = {
  ...failedBackup,
  status: 'completed',
  failedReason: undefined,
  result: { id: '2026-11-26T12-30-34-921Z-34dac9ac618b', filename: 'b.dump.zst', size: 1 },
};

function capturingLogger() {
  const text: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => text.push(line) });
  const lines = () => text.map((line) => JSON.parse(line) as Record<string, unknown>);
  return { logger, text, lines };
}

function memoryCounter() {
  const counts: Record<string, number> = {};
  const counter: NotificationCounter = {
    async count(outcome: DeliveryOutcome, channel: NotificationChannel) {
      const field = `${outcome}:${channel}`;
      counts[field] = (counts[field] ?? 0) + 1;
    },
  };
  return { counter, counts };
}

/** A notifier whose attempts do what `attempt` says (resolve, throw, or hang until aborted). */
function fakeNotifier(
  channel: NotificationChannel,
  attempt: (signal: AbortSignal) => Promise<void>,
): Notifier & { sent: JobNotification[] } {
  const sent: JobNotification[] = [];
  return {
    channel,
    target: `${channel}-target`,
    sent,
    async send(notification, _delivery, signal) {
      sent.push(notification);
      await attempt(signal);
    },
  };
}

const hang = (signal: AbortSignal) =>
  new Promise<void>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
const policy = { retries: 1, delayMs: 5, timeoutMs: 1_000 };

afterEach(() => {
  vi.restoreAllMocks();
});

describe('notifyJobOutcome', () => {
  it('sends to every notifier, then logs and counts each delivery by channel', async () => {
    const { logger, lines } = capturingLogger();
    const { counter, counts } = memoryCounter();
    const webhook = fakeNotifier('webhook', async () => {});
    const email = fakeNotifier('email', async () => {
      throw new NotificationError('email not sent: 550 no such mailbox', { retryable: false });
    });
    const reports = await notifyJobOutcome(failedBackup, {
      notifiers: [webhook, email],
      notifyOn: 'failure',
      policy,
      logger,
      counter,
      signal: new AbortController().signal,
    });
    expect(reports.map((report) => [report.channel, report.result.ok])).toEqual([
      ['webhook', true],
      ['email', false],
    ]);
    expect(webhook.sent[0]?.error?.code).toBe('TABLE_NOT_FOUND');
    expect(counts).toEqual({ 'sent:webhook': 1, 'failed:email': 1 });
    const failed = lines().find((line) => line.msg === 'notification failed');
    expect(failed).toMatchObject({
      level: 50,
      channel: 'email',
      jobId: failedBackup.id,
      event: 'backup.failed',
      attempts: 1,
      error: 'email not sent: 550 no such mailbox',
    });
  });

  it('sends nothing for a success unless NOTIFY_ON=always', async () => {
    const webhook = fakeNotifier('webhook', async () => {});
    const context = {
      notifiers: [webhook],
      policy,
      logger: capturingLogger().logger,
      signal: new AbortController().signal,
    };
    expect(await notifyJobOutcome(completedBackup, { ...context, notifyOn: 'failure' })).toEqual(
      [],
    );
    expect(webhook.sent).toHaveLength(0);
    await notifyJobOutcome(completedBackup, { ...context, notifyOn: 'always' });
    expect(webhook.sent.map((sent) => sent.event)).toEqual(['backup.succeeded']);
  });

  it('survives a counter that cannot count (Redis down)', async () => {
    const { logger, lines } = capturingLogger();
    const reports = await notifyJobOutcome(failedBackup, {
      notifiers: [fakeNotifier('webhook', async () => {})],
      notifyOn: 'failure',
      policy,
      logger,
      counter: { count: () => Promise.reject(new Error('Connection is closed.')) },
      signal: new AbortController().signal,
    });
    expect(reports[0]?.result.ok).toBe(true);
    expect(lines().some((line) => line.msg === 'notification not counted')).toBe(true);
  });
});

describe('JobNotifications', () => {
  it('returns at once from jobFinished, however long the receiver takes', async () => {
    const { counter, counts } = memoryCounter();
    let release: () => void = () => {};
    const slow = fakeNotifier(
      'webhook',
      () =>
        new Promise<void>((resolve) => {
          release = resolve;
        }),
    );
    const notifications = new JobNotifications({
      notifiers: [slow],
      notifyOn: 'failure',
      policy,
      logger: capturingLogger().logger,
      counter,
    });
    notifications.jobFinished(failedBackup);
    expect(notifications.inFlight).toBe(1);
    await vi.waitFor(() => expect(slow.sent).toHaveLength(1));
    release();
    await vi.waitFor(() => expect(notifications.inFlight).toBe(0));
    expect(counts).toEqual({ 'sent:webhook': 1 });
  });

  it('waits a bounded time at close, then abandons what is left and counts it as failed', async () => {
    const { logger, lines } = capturingLogger();
    const { counter, counts } = memoryCounter();
    const stuck = fakeNotifier('webhook', hang);
    const notifications = new JobNotifications({
      notifiers: [stuck],
      notifyOn: 'failure',
      policy: { retries: 3, delayMs: 5, timeoutMs: 60_000 },
      logger,
      counter,
    });
    notifications.jobFinished(failedBackup);
    const started = Date.now();
    await notifications.close(100);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(notifications.inFlight).toBe(0);
    expect(counts).toEqual({ 'failed:webhook': 1 });
    expect(lines().map((line) => line.msg)).toEqual(
      expect.arrayContaining(['shutdown: abandoning notifications', 'notification failed']),
    );
    // Nothing new starts once closed.
    notifications.jobFinished(failedBackup);
    expect(notifications.inFlight).toBe(0);
  });

  it('close returns at once with nothing in flight', async () => {
    const notifications = new JobNotifications({
      notifiers: [fakeNotifier('webhook', async () => {})],
      notifyOn: 'failure',
      policy,
      logger: capturingLogger().logger,
    });
    const started = Date.now();
    await notifications.close(10_000);
    expect(Date.now() - started).toBeLessThan(500);
  });
});

describe('secrets', () => {
  const url = 'https://hooks.example.com/services/T0001/B0002/XyZsecretToken123';
  const secret = 'whsec-do-not-log-0123456789';

  it('keep the webhook URL path and the signing secret out of errors and logs', async () => {
    // A library that puts the whole request in its error message, secrets and all.
    vi.spyOn(globalThis, 'fetch').mockImplementation(async (input, init) => {
      const headers = JSON.stringify(init?.headers);
      throw new TypeError(`fetch ${String(input)} failed`, {
        cause: new Error(`request ${headers} with key ${secret}`),
      });
    });
    const { logger, text } = capturingLogger();
    const reports = await notifyJobOutcome(failedBackup, {
      notifiers: [new WebhookNotifier({ url, secret })],
      notifyOn: 'failure',
      policy: { retries: 1, delayMs: 5, timeoutMs: 1_000 },
      logger,
      signal: new AbortController().signal,
    });
    const result = reports[0]?.result;
    expect(result?.ok).toBe(false);
    const message = result && !result.ok ? result.error.message : '';
    expect(message).toContain('webhook request failed: fetch [redacted] failed');
    const logged = text.join('\n');
    expect(logged).toContain('notification failed');
    expect(logged).toContain('https://hooks.example.com');
    for (const leaked of [message, logged]) {
      expect(leaked).not.toContain('XyZsecretToken123');
      expect(leaked).not.toContain('/services/');
      expect(leaked).not.toContain(secret);
    }
  });

  it('are never in the start-up line that names the notifiers', () => {
    const config = loadConfig(
      {
        DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/postgres',
        NOTIFY_WEBHOOK_URL: url,
        NOTIFY_WEBHOOK_SECRET: secret,
        NOTIFY_SMTP_HOST: 'smtp.example.com',
        NOTIFY_SMTP_USER: 'pgkeep',
        NOTIFY_SMTP_PASSWORD: 'smtp-password-do-not-log',
        NOTIFY_EMAIL_FROM: 'backups@example.com',
        NOTIFY_EMAIL_TO: 'ops@example.com, dba@example.com',
      },
      { requireAuth: false },
    );
    const { logger, text, lines } = capturingLogger();
    const notifiers = createNotifiers(config, logger);
    expect(notifiers.map(({ channel, target }) => [channel, target])).toEqual([
      ['webhook', 'https://hooks.example.com'],
      ['email', 'smtp://smtp.example.com:587'],
    ]);
    expect(lines()[0]).toMatchObject({ msg: 'notifications enabled', notifyOn: 'failure' });
    const logged = text.join('\n');
    for (const leaked of ['XyZsecretToken123', secret, 'smtp-password-do-not-log']) {
      expect(logged).not.toContain(leaked);
    }
  });
});

describe('createNotifiers', () => {
  it('makes none when nothing is configured', () => {
    const config = loadConfig(
      { DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/postgres' },
      { requireAuth: false },
    );
    const { logger, text } = capturingLogger();
    expect(createNotifiers(config, logger)).toEqual([]);
    expect(text).toEqual([]);
  });
});

describe('redisNotificationCounter', () => {
  it('adds one to `<prefix>:pgkeep-metrics` field `notifications_<outcome>_total:<channel>`', async () => {
    const calls: unknown[][] = [];
    const counter = redisNotificationCounter(
      { hincrby: async (...args: unknown[]) => calls.push(args) },
      'pgkeep',
    );
    await counter.count('failed', 'webhook');
    await counter.count('sent', 'email');
    expect(calls).toEqual([
      ['pgkeep:pgkeep-metrics', 'notifications_failed_total:webhook', 1],
      ['pgkeep:pgkeep-metrics', 'notifications_sent_total:email', 1],
    ]);
  });
});
