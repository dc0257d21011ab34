import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.js';

const minimal = { DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/postgres' };
const email = {
  NOTIFY_SMTP_HOST: 'smtp.example.com',
  NOTIFY_EMAIL_FROM: 'pgkeep <backups@example.com>',
  NOTIFY_EMAIL_TO: 'ops@example.com, dba@example.com',
};

const load = (env: Record<string, string>) =>
  loadConfig({ ...minimal, ...env }, { requireAuth: false });

function issues(env: Record<string, string>): string[] {
  try {
    load(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).issues;
  }
  throw new Error('loadConfig accepted an invalid environment');
}

describe('notification settings', () => {
  it('default to failures only, no channel, 3 retries from 1 s, 10 s per attempt', () => {
    const config = load({});
    expect(config).toMatchObject({
      NOTIFY_ON: 'failure',
      NOTIFY_SMTP_PORT: 587,
      NOTIFY_SMTP_SECURE: false,
      NOTIFY_RETRIES: 3,
      NOTIFY_RETRY_DELAY_MS: 1_000,
      NOTIFY_TIMEOUT_MS: 10_000,
      NOTIFY_SHUTDOWN_TIMEOUT_MS: 10_000,
    });
    expect(config.NOTIFY_WEBHOOK_URL).toBeUndefined();
    expect(config.NOTIFY_SMTP_HOST).toBeUndefined();
  });

  it('parse the recipients as a list, and the sender with or without a name', () => {
    const config = load({ ...email, NOTIFY_SMTP_SECURE: 'true', NOTIFY_SMTP_PORT: '465' });
    expect(config.NOTIFY_EMAIL_TO).toEqual(['ops@example.com', 'dba@example.com']);
    expect(config.NOTIFY_EMAIL_FROM).toBe('pgkeep <backups@example.com>');
    expect(config.NOTIFY_SMTP_SECURE).toBe(true);
    expect(load({ ...email, NOTIFY_EMAIL_FROM: 'root@localhost' }).NOTIFY_EMAIL_FROM).toBe(
      'root@localhost',
    );
  });

  it('accept an http(s) webhook with a secret', () => {
    const config = load({
      NOTIFY_ON: 'always',
      NOTIFY_WEBHOOK_URL: 'https://hooks.slack.com/services/T/B/x',
      NOTIFY_WEBHOOK_SECRET: '0123456789abcdef',
    });
    expect(config.NOTIFY_ON).toBe('always');
    expect(config.NOTIFY_WEBHOOK_URL).toBe('https://hooks.slack.com/services/T/B/x');
  });

  it.each([
    [{ NOTIFY_ON: 'sometimes' }, 'NOTIFY_ON'],
    [{ NOTIFY_WEBHOOK_URL: 'ftp://example.com/hook' }, 'NOTIFY_WEBHOOK_URL'],
    [{ NOTIFY_WEBHOOK_URL: 'not a url' }, 'NOTIFY_WEBHOOK_URL'],
    [{ NOTIFY_WEBHOOK_URL: 'https://user:pw@example.com/hook' }, 'NOTIFY_WEBHOOK_URL'],
    [{ NOTIFY_WEBHOOK_SECRET: '0123456789abcdef' }, 'NOTIFY_WEBHOOK_SECRET'],
    [
      { NOTIFY_WEBHOOK_URL: 'https://example.com/hook', NOTIFY_WEBHOOK_SECRET: 'short' },
      'NOTIFY_WEBHOOK_SECRET',
    ],
    [{ ...email, NOTIFY_SMTP_PORT: '70000' }, 'NOTIFY_SMTP_PORT'],
    [{ ...email, NOTIFY_SMTP_SECURE: 'maybe' }, 'NOTIFY_SMTP_SECURE'],
    [{ ...email, NOTIFY_EMAIL_TO: 'ops@example.com, nobody' }, 'NOTIFY_EMAIL_TO'],
    [{ ...email, NOTIFY_EMAIL_TO: ' , ' }, 'NOTIFY_EMAIL_TO'],
    [{ ...email, NOTIFY_EMAIL_FROM: 'pgkeep' }, 'NOTIFY_EMAIL_FROM'],
    [{ ...email, NOTIFY_SMTP_PASSWORD: 'secret' }, 'NOTIFY_SMTP_USER'],
    [{ ...email, NOTIFY_SMTP_USER: 'pgkeep' }, 'NOTIFY_SMTP_PASSWORD'],
    [{ NOTIFY_RETRIES: '-1' }, 'NOTIFY_RETRIES'],
    [{ NOTIFY_TIMEOUT_MS: '10' }, 'NOTIFY_TIMEOUT_MS'],
  ])('refuse %o, naming %s', (env, key) => {
    expect(issues(env).some((issue) => issue.startsWith(`${key}:`))).toBe(true);
  });

  it('want the SMTP host, the sender and the recipients together', () => {
    expect(issues({ NOTIFY_SMTP_HOST: 'smtp.example.com' })).toEqual([
      expect.stringMatching(/^NOTIFY_EMAIL_FROM: email notifications need/),
      expect.stringMatching(/^NOTIFY_EMAIL_TO: email notifications need/),
    ]);
    expect(issues({ NOTIFY_EMAIL_TO: 'ops@example.com' })).toEqual([
      expect.stringMatching(/^NOTIFY_SMTP_HOST: /),
      expect.stringMatching(/^NOTIFY_EMAIL_FROM: /),
    ]);
  });

  it('never repeat a secret in their messages', () => {
    const message = issues({
      NOTIFY_WEBHOOK_URL: 'https://user:hunter2-secret@example.com/hook',
      NOTIFY_WEBHOOK_SECRET: 'tiny',
      NOTIFY_SMTP_PASSWORD: 'smtp-secret-value',
    }).join('\n');
    expect(message).not.toContain('hunter2-secret');
    expect(message).not.toContain('tiny');
    expect(message).not.toContain('smtp-secret-value');
  });
});
