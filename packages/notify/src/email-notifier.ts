import { createTransport } from 'nodemailer';
import { emailSubject, emailText, type JobNotification } from './notification.js';
import { type Delivery, describeError, NotificationError, type Notifier } from './notifier.js';
import { createRedactor, smtpPasswordSecrets } from './redact.js';

export interface EmailNotifierOptions {
  host: string;
  port: number;
  /** true: TLS from the first byte (port 465). false: STARTTLS when the server offers it. */
  secure: boolean;
  user?: string | undefined;
  password?: string | undefined;
  from: string;
  to: string[];
  /** Connection, greeting and socket-idle timeouts of one attempt. */
  timeoutMs: number;
  /** For tests against a server with a self-signed certificate. */
  tls?: { rejectUnauthorized?: boolean };
}

interface SmtpFailure {
  code?: string;
  responseCode?: number;
}

/**
 * One plain-text message to every recipient, over a fresh SMTP connection per attempt (a
 * notification is rare; a pool would hold a connection open for nothing).
 */
export class EmailNotifier implements Notifier {
  readonly channel = 'email' as const;
  readonly target: string;
  private readonly options: EmailNotifierOptions;
  private readonly redact: (text: string) => string;

  constructor(options: EmailNotifierOptions) {
    this.options = options;
    this.target = `smtp://${options.host}:${options.port}`;
    this.redact = createRedactor(smtpPasswordSecrets(options.user, options.password));
  }

  async send(notification: JobNotification, delivery: Delivery, signal: AbortSignal) {
    const { host, port, secure, user, password, timeoutMs } = this.options;
    const transport = createTransport({
      host,
      port,
      secure,
      // Credentials never cross the network in clear: with a user set and no implicit TLS,
      // the server must offer STARTTLS or the attempt fails before AUTH.
      requireTLS: !secure && Boolean(user),
      ...(user ? { auth: { user, pass: password ?? '' } } : {}),
      connectionTimeout: timeoutMs,
      greetingTimeout: timeoutMs,
      socketTimeout: timeoutMs,
      ...(this.options.tls ? { tls: this.options.tls } : {}),
    });
    // nodemailer takes no AbortSignal: closing the transport ends the attempt's connection.
    const onAbort = () => transport.close();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      const sending = transport.sendMail({
        from: this.options.from,
        to: this.options.to,
        subject: emailSubject(notification),
        text: emailText(notification),
        headers: { 'X-Pgkeep-Event': notification.event, 'X-Pgkeep-Delivery': delivery.id },
        // The message is built from job data only: no file or URL is ever attached.
        disableFileAccess: true,
        disableUrlAccess: true,
      });
      const aborted = new Promise<never>((_, reject) => {
        if (signal.aborted) reject(signal.reason);
        signal.addEventListener('abort', () => reject(signal.reason), { once: true });
      });
      aborted.catch(() => {});
      const info = (await Promise.race([sending, aborted])) as { rejected?: unknown[] };
      if (Array.isArray(info.rejected) && info.rejected.length > 0) {
        // Some recipients refused, the others have the message: not worth sending it again.
        throw new NotificationError(
          `the SMTP server refused ${info.rejected.length} of ${this.options.to.length} recipients`,
          { retryable: false },
        );
      }
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      if (error instanceof NotificationError) throw error;
      const { responseCode } = error as SmtpFailure;
      // A 5xx reply (bad login, refused sender or recipient) will be the same next time.
      const permanent = typeof responseCode === 'number' && responseCode >= 500;
      throw new NotificationError(this.redact(`email not sent: ${describeError(error)}`), {
        retryable: !permanent,
      });
    } finally {
      signal.removeEventListener('abort', onAbort);
      transport.close();
    }
  }
}
