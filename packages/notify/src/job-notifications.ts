import type { Config, Logger } from '@pgkeep/core';
import { type DeliveryResult, deliver, type RetryPolicy } from './deliver.js';
import { EmailNotifier } from './email-notifier.js';
import { buildNotification, type FinishedJob, type NotifyOn } from './notification.js';
import type { NotificationCounter } from './notification-counter.js';
import type { NotificationChannel, Notifier } from './notifier.js';
import { WebhookNotifier } from './webhook-notifier.js';

type NotifyConfig = Pick<
  Config,
  | 'NOTIFY_ON'
  | 'NOTIFY_WEBHOOK_URL'
  | 'NOTIFY_WEBHOOK_SECRET'
  | 'NOTIFY_SMTP_HOST'
  | 'NOTIFY_SMTP_PORT'
  | 'NOTIFY_SMTP_SECURE'
  | 'NOTIFY_SMTP_USER'
  | 'NOTIFY_SMTP_PASSWORD'
  | 'NOTIFY_EMAIL_FROM'
  | 'NOTIFY_EMAIL_TO'
  | 'NOTIFY_RETRIES'
  | 'NOTIFY_RETRY_DELAY_MS'
  | 'NOTIFY_TIMEOUT_MS'
>;

/** The notifiers the configuration asks for (none, one or both); says which at start. */
export function createNotifiers(config: NotifyConfig, logger: Logger): Notifier[] {
  const notifiers: Notifier[] = [];
  if (config.NOTIFY_WEBHOOK_URL) {
    notifiers.push(
      new WebhookNotifier({ url: config.NOTIFY_WEBHOOK_URL, secret: config.NOTIFY_WEBHOOK_SECRET }),
    );
  }
  if (config.NOTIFY_SMTP_HOST && config.NOTIFY_EMAIL_FROM && config.NOTIFY_EMAIL_TO) {
    notifiers.push(
      new EmailNotifier({
        host: config.NOTIFY_SMTP_HOST,
        port: config.NOTIFY_SMTP_PORT,
        secure: config.NOTIFY_SMTP_SECURE,
        user: config.NOTIFY_SMTP_USER,
        password: config.NOTIFY_SMTP_PASSWORD,
        from: config.NOTIFY_EMAIL_FROM,
        to: config.NOTIFY_EMAIL_TO,
        timeoutMs: config.NOTIFY_TIMEOUT_MS,
      }),
    );
  }
  if (notifiers.length > 0) {
    logger.info(
      {
        notifyOn: config.NOTIFY_ON,
        notifiers: notifiers.map(({ channel, target }) => ({ channel, target })),
        signed: Boolean(config.NOTIFY_WEBHOOK_SECRET),
      },
      'notifications enabled',
    );
  }
  return notifiers;
}

export interface NotifyContext {
  notifiers: Notifier[];
  notifyOn: NotifyOn;
  policy: RetryPolicy;
  logger: Logger;
  counter?: NotificationCounter | undefined;
  /** Aborted at shutdown: attempts and waits in progress end, and nothing more is sent. */
  signal: AbortSignal;
}

export interface ChannelReport {
  channel: NotificationChannel;
  result: DeliveryResult;
}

/**
 * Tells every notifier about a finished job, if it is one to announce, and logs and counts how
 * each delivery went. Never throws: a notification is never the reason anything else fails.
 */
export async function notifyJobOutcome(
  job: FinishedJob,
  context: NotifyContext,
): Promise<ChannelReport[]> {
  const { logger } = context;
  if (context.notifiers.length === 0) return [];
  try {
    const notification = buildNotification(job, context.notifyOn);
    if (!notification) return [];
    const fields = { jobId: job.id, job: job.name, event: notification.event };
    return await Promise.all(
      context.notifiers.map(async (notifier): Promise<ChannelReport> => {
        const result = await deliver(notifier, notification, context.policy, context);
        const channel = notifier.channel;
        const where = { ...fields, channel, target: notifier.target, attempts: result.attempts };
        if (result.ok) logger.info(where, 'notification sent');
        else logger.error({ ...where, error: result.error.message }, 'notification failed');
        await context.counter
          ?.count(result.ok ? 'sent' : 'failed', channel)
          .catch((error: unknown) => {
            logger.warn({ ...where, error: (error as Error)?.message }, 'notification not counted');
          });
        return { channel, result };
      }),
    );
  } catch (error) {
    logger.error({ jobId: job.id, error: (error as Error)?.message }, 'notification failed');
    return [];
  }
}

/**
 * The worker's side: `jobFinished` starts the notifications of a job and returns at once, so
 * a slow or failing receiver never holds up a job; `close` waits a bounded time for those in
 * flight at shutdown and then abandons the rest.
 */
export class JobNotifications {
  private readonly pending = new Set<Promise<unknown>>();
  private readonly shutdown = new AbortController();
  private readonly context: NotifyContext;

  constructor(context: Omit<NotifyContext, 'signal'>) {
    this.context = { ...context, signal: this.shutdown.signal };
  }

  get enabled(): boolean {
    return this.context.notifiers.length > 0;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  jobFinished(job: FinishedJob): void {
    if (!this.enabled || this.shutdown.signal.aborted) return;
    const sending = notifyJobOutcome(job, this.context).finally(() => this.pending.delete(sending));
    this.pending.add(sending);
  }

  async close(timeoutMs: number): Promise<void> {
    if (this.pending.size > 0) {
      this.context.logger.info(
        { notifications: this.pending.size, timeoutMs },
        'waiting for notifications in flight',
      );
      await settledWithin([...this.pending], timeoutMs);
    }
    const left = this.pending.size;
    this.shutdown.abort();
    if (left > 0) {
      this.context.logger.warn({ notifications: left }, 'shutdown: abandoning notifications');
      // Abandoned deliveries settle at once; their failure is still logged and counted.
      await settledWithin([...this.pending], 2_000);
    }
  }
}

async function settledWithin(promises: Promise<unknown>[], ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.allSettled(promises),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]);
  clearTimeout(timer);
}

/** JobNotifications from the configuration; disabled (a no-op) when no notifier is set up. */
export function createJobNotifications(
  config: NotifyConfig,
  logger: Logger,
  counter?: NotificationCounter,
): JobNotifications {
  return new JobNotifications({
    notifiers: createNotifiers(config, logger),
    notifyOn: config.NOTIFY_ON,
    policy: {
      retries: config.NOTIFY_RETRIES,
      delayMs: config.NOTIFY_RETRY_DELAY_MS,
      timeoutMs: config.NOTIFY_TIMEOUT_MS,
    },
    logger,
    counter,
  });
}
