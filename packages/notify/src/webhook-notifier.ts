import type { JobNotification } from './notification.js';
import { type Delivery, describeError, NotificationError, type Notifier } from './notifier.js';
import { createRedactor, urlSecrets } from './redact.js';
import { signatureHeader, signWebhook, timestampHeader } from './signature.js';

export interface WebhookNotifierOptions {
  url: string;
  /** Signs every request (X-Pgkeep-Signature); unsigned without one (e.g. Slack). */
  secret?: string | undefined;
}

/**
 * JSON POST of the notification. A 2xx answer is a delivery; 408, 429 and 5xx answers and
 * network errors are worth another attempt; any other answer (a 4xx, a redirect) is not.
 */
export class WebhookNotifier implements Notifier {
  readonly channel = 'webhook' as const;
  readonly target: string;
  private readonly url: string;
  private readonly secret: string | undefined;
  private readonly redact: (text: string) => string;

  constructor(options: WebhookNotifierOptions) {
    this.url = options.url;
    this.secret = options.secret;
    this.target = new URL(options.url).origin;
    this.redact = createRedactor([...urlSecrets(options.url), options.secret]);
  }

  async send(notification: JobNotification, delivery: Delivery, signal: AbortSignal) {
    const body = JSON.stringify(notification);
    const timestamp = String(Math.floor(Date.now() / 1000));
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'user-agent': 'pgkeep-notify',
      'x-pgkeep-event': notification.event,
      'x-pgkeep-delivery': delivery.id,
      [timestampHeader.toLowerCase()]: timestamp,
    };
    if (this.secret)
      headers[signatureHeader.toLowerCase()] = signWebhook(this.secret, timestamp, body);
    let response: Response;
    try {
      // A redirect is not followed: it would carry the signed body to wherever it points.
      response = await fetch(this.url, {
        method: 'POST',
        headers,
        body,
        signal,
        redirect: 'manual',
      });
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      throw new NotificationError(this.redact(`webhook request failed: ${describeError(error)}`), {
        retryable: true,
      });
    }
    // The answer's body is not read (it could be anything, of any size): release it.
    await response.body?.cancel().catch(() => {});
    if (response.ok) return;
    const status = response.status;
    throw new NotificationError(`webhook answered ${status}`, {
      retryable: status >= 500 || status === 408 || status === 429,
    });
  }
}
