import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.js';
import { slotNameFor } from './pitr-settings.js';
import { loadTargets, type ServerSettings } from './targets.js';
import { parseTargetsFile } from './targets-file.js';

const baseEnv = {
  JWT_SECRET: 'a-very-long-hs256-secret-of-40-characters!',
  TARGETS_FILE: 'targets.yaml',
};
/** A configuration with the S3 destination `offsite` and an encryption key. */
const fullEnv = {
  ...baseEnv,
  BACKUP_DESTINATIONS: 'local,offsite',
  S3_OFFSITE_BUCKET: 'pgkeep-offsite',
  BACKUP_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64'),
};

/** A targets file whose server `name` has the `pitr` lines given (indented under it). */
const withPitr = (pitr: string, name = 'main') => `
servers:
  ${name}:
    url: postgres://pgkeep@db1:5432/postgres
${pitr
  .split('\n')
  .map((line) => (line.trim() === '' ? '' : `    ${line}`))
  .join('\n')}
targets:
  app:
    server: ${name}
    database: app
`;

function parse(text: string, env: Record<string, string> = baseEnv) {
  return parseTargetsFile(text, 'targets.yaml', loadConfig(env), env);
}

function server(text: string, env: Record<string, string> = baseEnv): ServerSettings {
  const found = parse(text, env).servers[0];
  if (!found) throw new Error('no server');
  return found;
}

function issues(text: string, env: Record<string, string> = baseEnv): string[] {
  try {
    parse(text, env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).issues;
  }
  throw new Error('the targets file was accepted');
}

describe('pitr in a targets file', () => {
  it('is off unless asked for', () => {
    expect(server(withPitr('')).pitr).toBeNull();
    expect(server(withPitr('pitr: false')).pitr).toBeNull();
    expect(server(withPitr('pitr: { enabled: false, checkpoint: fast }')).pitr).toBeNull();
    expect(server(withPitr('pitr:\n  enabled: "false"')).pitr).toBeNull();
  });

  it('`pitr: true` gives the defaults', () => {
    expect(server(withPitr('pitr: true')).pitr).toEqual({
      slot: 'pgkeep_main',
      destinations: ['local'],
      encryption: false,
      baseBackup: { schedule: { pattern: '0 1 * * 0', enabled: true }, checkpoint: 'spread' },
      retention: { kind: 'keep-last', keepLast: 2 },
      cleanup: { schedule: { pattern: '30 3 * * 0', enabled: true } },
      timeZone: 'UTC',
      lagWarningSeconds: 600,
      retainedWarningBytes: 8 * 1024 * 1024 * 1024,
      switchWalSeconds: 60,
    });
    // `{ enabled: true }` and `{}` are the same thing.
    const defaults = server(withPitr('pitr: true')).pitr;
    expect(server(withPitr('pitr: { enabled: true }')).pitr).toEqual(defaults);
    expect(server(withPitr('pitr: {}')).pitr).toEqual(defaults);
  });

  it('takes its destinations, encryption and time zone from the environment by default', () => {
    const pitr = server(withPitr('pitr: true'), {
      ...fullEnv,
      BACKUP_TIMEZONE: 'Europe/Berlin',
    }).pitr;
    expect(pitr).toMatchObject({
      destinations: ['local', 'offsite'],
      encryption: true,
      timeZone: 'Europe/Berlin',
    });
  });

  it('takes every key of a full pitr block', () => {
    const pitr = server(
      withPitr(`pitr:
  enabled: true
  baseBackupSchedule: "15 2 * * *"
  cleanupSchedule: "45 4 * * 1"
  checkpoint: fast
  retention: { gfs: { days: 3, weeks: 2, months: 1, years: 0 } }
  timeZone: America/New_York
  destinations: [offsite]
  encryption: false
  lagWarningSeconds: 120
  retainedWarningBytes: 1073741824
  switchWalSeconds: 0`),
      fullEnv,
    ).pitr;
    expect(pitr).toEqual({
      slot: 'pgkeep_main',
      destinations: ['offsite'],
      encryption: false,
      baseBackup: { schedule: { pattern: '15 2 * * *', enabled: true }, checkpoint: 'fast' },
      retention: { kind: 'gfs', days: 3, weeks: 2, months: 1, years: 0 },
      cleanup: { schedule: { pattern: '45 4 * * 1', enabled: true } },
      timeZone: 'America/New_York',
      lagWarningSeconds: 120,
      retainedWarningBytes: 1073741824,
      switchWalSeconds: 0,
    });
    expect(server(withPitr('pitr: { retention: { keepLast: 5 } }')).pitr?.retention).toEqual({
      kind: 'keep-last',
      keepLast: 5,
    });
  });

  it('reads numbers and booleans given as strings, as interpolated variables give them', () => {
    const env = { ...fullEnv, SWITCH: '30', ENCRYPT: 'false' };
    const pitr = server(
      withPitr(`pitr: { switchWalSeconds: "\${SWITCH}", encryption: "\${ENCRYPT}" }`),
      env,
    ).pitr;
    expect(pitr).toMatchObject({ switchWalSeconds: 30, encryption: false });
  });

  it('turns a schedule off and keeps the default pattern to turn it back on with', () => {
    const pitr = server(
      withPitr('pitr: { baseBackupSchedule: "off", cleanupSchedule: "off" }'),
    ).pitr;
    expect(pitr?.baseBackup.schedule).toEqual({ pattern: '0 1 * * 0', enabled: false });
    expect(pitr?.cleanup.schedule).toEqual({ pattern: '30 3 * * 0', enabled: false });
  });

  it('names an unknown key under pitr', () => {
    expect(issues(withPitr('pitr: { bogus: 1 }'))).toEqual([
      'targets file: servers.main.pitr.bogus: is not a known key',
    ]);
  });

  it('refuses bad values with the key that holds them', () => {
    // Each alone: the message names the key, not just `pitr`.
    expect(issues(withPitr('pitr: { checkpoint: slow }'))).toEqual([
      'targets file: servers.main.pitr.checkpoint: Invalid option: expected one of "fast"|"spread"',
    ]);
    expect(
      issues(withPitr('pitr: { checkpoint: fast, bogus: 1, switchWalSeconds: 90000 }')),
    ).toEqual([
      'targets file: servers.main.pitr.switchWalSeconds: Too big: expected number to be <=86400',
      'targets file: servers.main.pitr.bogus: is not a known key',
    ]);
    for (const value of ['"yes"', '1', 'null', '[true]']) {
      expect(issues(withPitr(`pitr: ${value}`)), value).toEqual([
        'targets file: servers.main.pitr: must be true, false or a mapping of settings',
      ]);
    }
    const found = issues(
      withPitr(
        'pitr: { checkpoint: slow, baseBackupSchedule: "every day", switchWalSeconds: -1, lagWarningSeconds: 1 }',
      ),
    );
    expect(found).toHaveLength(4);
    for (const key of [
      'checkpoint',
      'baseBackupSchedule',
      'switchWalSeconds',
      'lagWarningSeconds',
    ]) {
      expect(
        found.some((issue) => issue.startsWith(`targets file: servers.main.pitr.${key}: `)),
        key,
      ).toBe(true);
    }
    expect(
      issues(
        withPitr(
          'pitr: { retention: { keepLast: 2, gfs: { days: 1, weeks: 0, months: 0, years: 0 } } }',
        ),
      ),
    ).toEqual(['targets file: servers.main.pitr.retention: give keepLast or gfs (one of the two)']);
  });

  it('refuses a destination that is not configured', () => {
    expect(issues(withPitr('pitr: { destinations: [local, offsite] }'))).toEqual([
      'targets file: servers.main.pitr.destinations[1]: "offsite" is not a configured destination (list it in BACKUP_DESTINATIONS, with its S3_OFFSITE_* keys)',
    ]);
    expect(
      server(withPitr('pitr: { destinations: [local, offsite] }'), fullEnv).pitr?.destinations,
    ).toEqual(['local', 'offsite']);
  });

  it('refuses encryption without a key', () => {
    expect(issues(withPitr('pitr: { encryption: true }'))).toEqual([
      'targets file: servers.main.pitr.encryption: is true but neither BACKUP_ENCRYPTION_KEY nor BACKUP_ENCRYPTION_PASSPHRASE is set',
    ]);
    expect(server(withPitr('pitr: { encryption: true }'), fullEnv).pitr?.encryption).toBe(true);
  });
});

describe('slotNameFor', () => {
  /** What PostgreSQL accepts as a replication slot name. */
  const validSlot = /^[a-z0-9_]{1,63}$/;

  it('is pgkeep_<server>, with "-" as "_"', () => {
    expect(slotNameFor('main')).toBe('pgkeep_main');
    expect(server(withPitr('pitr: true', 'my-db')).pitr?.slot).toBe('pgkeep_my_db');
    expect(slotNameFor('a-b_c-1')).toBe('pgkeep_a_b_c_1');
  });

  it('stays within 63 characters and unique for long server names', () => {
    const shared = 'x'.repeat(56);
    const one = `${shared}-aaaaaa`;
    const other = `${shared}-bbbbbb`;
    expect(one).toHaveLength(63);
    for (const name of [one, other, 'y'.repeat(63), 'z'.repeat(56)]) {
      expect(slotNameFor(name), name).toMatch(validSlot);
    }
    expect(slotNameFor(one)).not.toBe(slotNameFor(other));
    expect(slotNameFor(one).startsWith(`pgkeep_${'x'.repeat(40)}`)).toBe(true);
    // The longest name that fits is kept whole.
    expect(slotNameFor('z'.repeat(56))).toBe(`pgkeep_${'z'.repeat(56)}`);
    // A 63-character server is accepted in a file, with such a slot.
    expect(server(withPitr('pitr: true', one)).pitr?.slot).toBe(slotNameFor(one));
  });
});

describe('PITR_ENABLED with DATABASE_URL alone', () => {
  const env = {
    JWT_SECRET: baseEnv.JWT_SECRET,
    DATABASE_URL: 'postgres://pgkeep@db1:5432/panel',
  };

  it('gives the server `default` point-in-time recovery with every default', () => {
    const on = { ...env, PITR_ENABLED: 'true' };
    const [found] = loadTargets(loadConfig(on), on).servers;
    expect(found?.pitr).toMatchObject({
      slot: 'pgkeep_default',
      baseBackup: { schedule: { pattern: '0 1 * * 0', enabled: true }, checkpoint: 'spread' },
      retention: { kind: 'keep-last', keepLast: 2 },
    });
  });

  it('is off unless asked for', () => {
    const [found] = loadTargets(loadConfig(env), env).servers;
    expect(found?.pitr).toBeNull();
  });
});
