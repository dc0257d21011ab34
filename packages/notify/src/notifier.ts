import type { JobNotification } from './notification.js';

export type NotificationChannel = 'webhook' | 'email';

/** One way of telling someone that a job ended. */
export interface Notifier {
  readonly channel: NotificationChannel;
  /** Where it sends, for logs: never a secret (a webhook's origin, an SMTP host). */
  readonly target: string;
  /**
   * One attempt. Throws a NotificationError whose message is safe to log; gives up when
   * `signal` aborts (the per-attempt timeout, or the worker's shutdown).
   */
  send(notification: JobNotification, delivery: Delivery, signal: AbortSignal): Promise<void>;
}

/** The same id on every attempt of one notification, so a receiver can drop duplicates. */
export interface Delivery {
  id: string;
  attempt: number;
}

/**
 * A failed attempt. The message has been through the notifier's redactor; `retryable` says
 * whether another attempt may succeed (a 500, a timeout, a refused connection) or not (a 400,
 * an SMTP 5xx reply such as a rejected login).
 */
export class NotificationError extends Error {
  readonly retryable: boolean;

  constructor(message: string, options: { retryable: boolean }) {
    super(message);
    this.name = 'NotificationError';
    this.retryable = options.retryable;
  }
}

/** A short description of any thrown value: message plus its cause's code, nothing else. */
export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause;
  const causeText =
    cause instanceof Error
      ? ((cause as NodeJS.ErrnoException).code ?? cause.message)
      : typeof cause === 'string'
        ? cause
        : '';
  const code = (error as NodeJS.ErrnoException).code;
  const text = code && !error.message.includes(code) ? `${code}: ${error.message}` : error.message;
  return causeText && !text.includes(causeText) ? `${text} (${causeText})` : text;
}
