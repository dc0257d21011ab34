import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { afterEach, describe, expect, it } from 'vitest';
import { deliver } from './deliver.js';
import { EmailNotifier, type EmailNotifierOptions } from './email-notifier.js';
import { buildNotification, type JobNotification } from './notification.js';

const notification = buildNotification(
  {
    name: 'restore',
    id: 'restore-0b5f7a52-5c61-4c0e-9d3c-3b0a6f2d8e11',
    status: 'failed',
    payload: {
      backupId: '2026-11-26T12-30-34-921Z-34dac9ac618b',
      target: 'panel',
      requestedBy: 'admin@example.com',
      requestedAt: '2026-11-26T12:30:00.000Z',
    },
    failedReason: '[ROW_COUNT_MISMATCH] public.User: 199 rows, the manifest says 200',
    attemptsMade: 1,
  },
  'failure',
) as JobNotification;

const password = 'sm7p-Pa55word-do-not-log';

interface Mail {
  from: string | undefined;
  to: string[];
  raw: string;
}

const servers: SMTPServer[] = [];
afterEach(async () => {
  for (const server of servers.splice(0))
    await new Promise<void>((resolve) => server.close(() => resolve()));
});

/** A local SMTP server on 127.0.0.1:<free port> that keeps what it is sent. */
async function smtpServer(options: SMTPServerOptions = {}) {
  const mails: Mail[] = [];
  let authAttempts = 0;
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
        mails.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : undefined,
          to: session.envelope.rcptTo.map((rcpt) => rcpt.address),
          raw,
        });
        callback();
      });
    },
    ...options,
    onAuth(auth, session, callback) {
      authAttempts += 1;
      if (options.onAuth) options.onAuth(auth, session, callback);
      else callback(null, { user: auth.username });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  const { port } = (server as unknown as { server: { address(): AddressInfo } }).server.address();
  return { port, mails, authAttempts: () => authAttempts };
}

function notifier(port: number, overrides: Partial<EmailNotifierOptions> = {}) {
  return new EmailNotifier({
    host: '127.0.0.1',
    port,
    secure: false,
    from: 'pgkeep <backups@example.com>',
    to: ['ops@example.com', 'dba@example.com'],
    timeoutMs: 5_000,
    ...overrides,
  });
}

function capturingLogger() {
  const lines: string[] = [];
  return { logger: pino({ level: 'debug' }, { write: (line: string) => lines.push(line) }), lines };
}

const once = { retries: 0, delayMs: 10, timeoutMs: 5_000 };

describe('EmailNotifier', () => {
  it('sends one plain-text message to every recipient, naming the error code', async () => {
    const smtp = await smtpServer();
    const result = await deliver(notifier(smtp.port), notification, once, {
      signal: new AbortController().signal,
      logger: capturingLogger().logger,
    });
    expect(result).toEqual({ ok: true, attempts: 1 });
    expect(smtp.mails).toHaveLength(1);
    const mail = smtp.mails[0] as Mail;
    expect(mail.from).toBe('backups@example.com');
    expect(mail.to).toEqual(['ops@example.com', 'dba@example.com']);
    expect(mail.raw).toContain('Subject: [pgkeep] restore failed: ROW_COUNT_MISMATCH');
    expect(mail.raw).toContain('X-Pgkeep-Event: restore.failed');
    expect(mail.raw).toContain('Error code:   ROW_COUNT_MISMATCH');
    expect(mail.raw).toContain('Database:     panel');
  });

  it('retries a server that answers 4xx, and not one that answers 5xx', async () => {
    let rcpts = 0;
    const busy = await smtpServer({
      onRcptTo(_address, _session, callback) {
        rcpts += 1;
        callback(Object.assign(new Error('try again later'), { responseCode: 451 }));
      },
    });
    const transient = await deliver(
      notifier(busy.port, { to: ['ops@example.com'] }),
      notification,
      { retries: 1, delayMs: 10, timeoutMs: 5_000 },
      { signal: new AbortController().signal, logger: capturingLogger().logger },
    );
    expect(transient).toMatchObject({ ok: false, attempts: 2 });
    expect(rcpts).toBe(2);

    const refusing = await smtpServer({
      onRcptTo(_address, _session, callback) {
        callback(Object.assign(new Error('no such mailbox'), { responseCode: 550 }));
      },
    });
    const permanent = await deliver(
      notifier(refusing.port, { to: ['ops@example.com'] }),
      notification,
      { retries: 3, delayMs: 10, timeoutMs: 5_000 },
      { signal: new AbortController().signal, logger: capturingLogger().logger },
    );
    expect(permanent).toMatchObject({ ok: false, attempts: 1 });
    expect(!permanent.ok && permanent.error.message).toContain('550');
  });

  it('never sends credentials over a connection without TLS', async () => {
    const plain = await smtpServer();
    const result = await deliver(
      notifier(plain.port, { user: 'pgkeep', password }),
      notification,
      once,
      { signal: new AbortController().signal, logger: capturingLogger().logger },
    );
    expect(result.ok).toBe(false);
    expect(plain.authAttempts()).toBe(0);
    expect(plain.mails).toHaveLength(0);
  });

  it('keeps the password out of the error even when the server echoes it back', async () => {
    // STARTTLS with smtp-server's built-in self-signed certificate for localhost.
    const echoing = await smtpServer({
      disabledCommands: [],
      onAuth(auth, _session, callback) {
        callback(
          Object.assign(new Error(`wrong password ${auth.password}`), { responseCode: 535 }),
        );
      },
    });
    const { logger, lines } = capturingLogger();
    const result = await deliver(
      notifier(echoing.port, {
        user: 'pgkeep',
        password,
        tls: { rejectUnauthorized: false },
      }),
      notification,
      { retries: 2, delayMs: 10, timeoutMs: 5_000 },
      { signal: new AbortController().signal, logger },
    );
    expect(echoing.authAttempts()).toBe(1);
    // A refused login is not retried.
    expect(result).toMatchObject({ ok: false, attempts: 1 });
    const message = result.ok ? '' : result.error.message;
    expect(message).toContain('535');
    expect(message).toContain('[redacted]');
    expect(message).not.toContain(password);
    expect(lines.join('\n')).not.toContain(password);
  });
});
