import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.js';

const load = (env: Record<string, string>) =>
  loadConfig(
    { DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/postgres', ...env },
    { requireAuth: false },
  );

describe('ADMIN_COOKIE_SECURE', () => {
  it('defaults to auto (Secure when the request came over https)', () => {
    expect(load({}).ADMIN_COOKIE_SECURE).toBe('auto');
  });

  it('reads true and false the way every boolean key does', () => {
    for (const value of ['true', '1', 'yes'])
      expect(load({ ADMIN_COOKIE_SECURE: value }).ADMIN_COOKIE_SECURE).toBe(true);
    for (const value of ['false', '0', 'no'])
      expect(load({ ADMIN_COOKIE_SECURE: value }).ADMIN_COOKIE_SECURE).toBe(false);
  });

  it('stops the process on anything else, naming the key', () => {
    expect(() => load({ ADMIN_COOKIE_SECURE: 'sometimes' })).toThrow(ConfigError);
    expect(() => load({ ADMIN_COOKIE_SECURE: 'sometimes' })).toThrow(
      /ADMIN_COOKIE_SECURE: must be auto, true or false/,
    );
  });
});
