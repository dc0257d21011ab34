import { type Logger, type LoggerOptions, pino } from 'pino';

export type { Logger } from 'pino';

/** Paths that may carry secrets anywhere a log line could reach them. */
export const redactPaths = [
  'password',
  '*.password',
  'connectionString',
  '*.connectionString',
  'env.PGPASSWORD',
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'token',
  '*.token',
  'secret',
  '*.secret',
  'DATABASE_URL',
  'LOCK_DATABASE_URL',
  'REDIS_URL',
  'JWT_SECRET',
  'NOTIFY_WEBHOOK_URL',
  'NOTIFY_WEBHOOK_SECRET',
  'NOTIFY_SMTP_PASSWORD',
  'CATALOG_KEY',
];

export function loggerOptions(level: string, name: string): LoggerOptions {
  const options: LoggerOptions = {
    name,
    level,
    redact: { paths: redactPaths, censor: '[redacted]' },
  };
  // Pretty output only for a person at a terminal; JSON lines everywhere else.
  if (process.stdout.isTTY) {
    options.transport = { target: 'pino-pretty', options: { translateTime: 'SYS:standard' } };
  }
  return options;
}

/** `stderr`: for a command whose stdout is its answer (JSON lines there would corrupt it). */
export function createLogger(
  level: string,
  name: string,
  to: 'stdout' | 'stderr' = 'stdout',
): Logger {
  if (to === 'stdout') return pino(loggerOptions(level, name));
  const { transport: _pretty, ...options } = loggerOptions(level, name);
  return pino(options, pino.destination(2));
}
