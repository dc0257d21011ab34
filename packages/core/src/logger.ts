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

/** `json`: one JSON object a line, for a log collector. `pretty`: readable lines, for a person. */
export type LogFormat = 'json' | 'pretty';

export interface LoggerSettings {
  format?: LogFormat;
  /** `stderr`: for a command whose stdout is its answer (log lines there would corrupt it). */
  to?: 'stdout' | 'stderr';
}

/**
 * Options for pino (or Fastify's `logger`). The format is the configuration's (LOG_FORMAT), not
 * guessed from a terminal: `npm start` at a terminal still writes the JSON a collector reads.
 * Pretty lines go through pino-pretty in pino's transport thread; redaction happens before a
 * line reaches it, so the same paths are hidden in both formats.
 */
export function loggerOptions(
  level: string,
  name: string,
  settings: LoggerSettings = {},
): LoggerOptions {
  const options: LoggerOptions = {
    name,
    level,
    redact: { paths: redactPaths, censor: '[redacted]' },
  };
  if (settings.format === 'pretty') {
    const to = settings.to ?? 'stdout';
    options.transport = {
      target: 'pino-pretty',
      options: {
        destination: to === 'stderr' ? 2 : 1,
        translateTime: 'SYS:standard',
        ignore: 'pid,hostname',
        // The transport runs in a worker thread, whose own stdout is never a terminal.
        colorize: process[to].isTTY === true,
      },
    };
  }
  return options;
}

export function createLogger(level: string, name: string, settings: LoggerSettings = {}): Logger {
  const options = loggerOptions(level, name, settings);
  if (options.transport || settings.to !== 'stderr') return pino(options);
  return pino(options, pino.destination(2));
}
