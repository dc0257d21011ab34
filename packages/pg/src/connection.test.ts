import { describe, expect, it } from 'vitest';
import {
  clientConfig,
  libpqEnv,
  parseDatabaseUrl,
  sessionOptions,
  withDatabase,
} from './connection.js';
import { restoreToolEnv } from './pg-restore.js';

describe('parseDatabaseUrl', () => {
  it('reads every part of a full URL', () => {
    expect(parseDatabaseUrl('postgresql://alice:pw@db.example:6543/shop?sslmode=require')).toEqual({
      host: 'db.example',
      port: 6543,
      user: 'alice',
      password: 'pw',
      database: 'shop',
      sslmode: 'require',
    });
  });

  it('decodes percent-encoded user, password and database', () => {
    const target = parseDatabaseUrl(
      'postgres://app%40corp:p%40ss%3Aw%2Fo%23rd%25@localhost/my%20db',
    );
    expect(target.user).toBe('app@corp');
    expect(target.password).toBe('p@ss:w/o#rd%');
    expect(target.database).toBe('my db');
  });

  it('defaults port, user, database and leaves password and sslmode unset', () => {
    const target = parseDatabaseUrl('postgres://db.example');
    expect(target).toEqual({
      host: 'db.example',
      port: 5432,
      user: 'postgres',
      password: undefined,
      database: 'postgres',
      sslmode: undefined,
    });
  });

  it('gives an IPv6 host without its URL brackets', () => {
    expect(parseDatabaseUrl('postgres://u:p@[::1]:5433/db')).toMatchObject({
      host: '::1',
      port: 5433,
    });
  });

  it('keeps the case of a mixed-case database name', () => {
    expect(parseDatabaseUrl('postgres://u@h/WhatsappPanel').database).toBe('WhatsappPanel');
  });

  it('throws on a string that is not a URL', () => {
    expect(() => parseDatabaseUrl('not a url')).toThrow();
  });

  it('withDatabase changes only the database', () => {
    const target = parseDatabaseUrl('postgres://u:p@h:5433/app');
    expect(withDatabase(target, 'postgres')).toEqual({ ...target, database: 'postgres' });
    expect(target.database).toBe('app');
  });
});

describe('libpqEnv', () => {
  const target = parseDatabaseUrl(
    'postgres://alice:top%20secret@db.example:6543/shop?sslmode=verify-full',
  );

  it('passes the connection through PG* variables, the password only in PGPASSWORD', () => {
    const env = libpqEnv(target, { PATH: '/opt/pg/bin', SECRET: 'do-not-leak', HOME: '/root' });
    expect(env).toMatchObject({
      PATH: '/opt/pg/bin',
      PGHOST: 'db.example',
      PGPORT: '6543',
      PGUSER: 'alice',
      PGDATABASE: 'shop',
      PGPASSWORD: 'top secret',
      PGSSLMODE: 'verify-full',
    });
    const holders = Object.entries(env).filter(([, value]) => value?.includes('top secret'));
    expect(holders.map(([key]) => key)).toEqual(['PGPASSWORD']);
  });

  it('keeps PATH but no other variable of the parent', () => {
    const env = libpqEnv(target, {
      PATH: '/usr/bin',
      SECRET: 'do-not-leak',
      DATABASE_URL: 'postgres://x:y@z/w',
      PGPASSFILE: '/root/.pgpass',
      PGOPTIONS: '-c statement_timeout=1',
    });
    expect(env.PATH).toBe('/usr/bin');
    expect(env.SECRET).toBeUndefined();
    expect(env.DATABASE_URL).toBeUndefined();
    expect(env.PGPASSFILE).toBeUndefined();
    // The parent's PGOPTIONS is not inherited; pgkeep sets its own.
    expect(env.PGOPTIONS).toBe('-c client_connection_check_interval=2000');
    expect(Object.values(env)).not.toContain('do-not-leak');
  });

  it('sets no PGPASSWORD or PGSSLMODE when the URL has none', () => {
    const env = libpqEnv(parseDatabaseUrl('postgres://bob@h/db'));
    expect(env).not.toHaveProperty('PGPASSWORD');
    expect(env).not.toHaveProperty('PGSSLMODE');
    expect(env.PATH).toBeTruthy();
  });
});

describe('session settings in PGOPTIONS', () => {
  const target = parseDatabaseUrl('postgres://bob@h/db');

  it("adds each setting as -c name=value after pgkeep's own", () => {
    const env = libpqEnv(target, {}, { synchronous_commit: 'off', maintenance_work_mem: '256MB' });
    expect(env.PGOPTIONS).toBe(
      '-c client_connection_check_interval=2000 -c synchronous_commit=off -c maintenance_work_mem=256MB',
    );
    expect(restoreToolEnv(target, { synchronous_commit: 'off' }).PGOPTIONS).toBe(
      '-c client_connection_check_interval=2000 -c synchronous_commit=off',
    );
    expect(restoreToolEnv(target).PGOPTIONS).toBe('-c client_connection_check_interval=2000');
  });

  it('escapes spaces and backslashes, so a value stays one option', () => {
    expect(sessionOptions({ application_name: 'a b\\c', 'pgkeep.note': 'x' })).toBe(
      '-c client_connection_check_interval=2000 -c application_name=a\\ b\\\\c -c pgkeep.note=x',
    );
  });

  it('refuses a name that is not a setting name', () => {
    expect(() => sessionOptions({ 'fsync=off -c x': 'y' })).toThrow(/not a setting name/);
    expect(() => sessionOptions({ '': 'y' })).toThrow(/not a setting name/);
  });
});

describe('clientConfig', () => {
  it('uses TLS with full verification only for verify-full, none when disabled or unset', () => {
    const config = (query: string) => clientConfig(parseDatabaseUrl(`postgres://u:p@h/db${query}`));
    expect(config('').ssl).toBeUndefined();
    expect(config('?sslmode=disable').ssl).toBeUndefined();
    expect(config('?sslmode=require').ssl).toEqual({ rejectUnauthorized: false });
    expect(config('?sslmode=verify-full').ssl).toEqual({ rejectUnauthorized: true });
    // verify-ca checks the certificate chain (not the host name); prefer/allow connect plainly.
    expect(config('?sslmode=verify-ca').ssl).toMatchObject({ rejectUnauthorized: true });
    expect(config('?sslmode=prefer').ssl).toBeUndefined();
    expect(config('').password).toBe('p');
    expect(clientConfig(parseDatabaseUrl('postgres://u@h/db'), 'pgkeep-x').application_name).toBe(
      'pgkeep-x',
    );
  });
});
