import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.js';

const minimal = {
  DATABASE_URL: 'postgres://pgkeep:pw@db.example:5432/app',
  JWT_SECRET: 'a-very-long-hs256-secret-of-40-characters!',
};

/** A complete, valid S3 destination called `name`. */
function s3(name: string, overrides: Record<string, string> = {}): Record<string, string> {
  const upper = name.toUpperCase();
  return {
    [`S3_${upper}_BUCKET`]: `pgkeep-${name}`,
    [`S3_${upper}_ACCESS_KEY_ID`]: 'AKIAEXAMPLEACCESSKEY',
    [`S3_${upper}_SECRET_ACCESS_KEY`]: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
    ...Object.fromEntries(
      Object.entries(overrides).map(([key, value]) => [`S3_${upper}_${key}`, value]),
    ),
  };
}

function configError(env: Record<string, string | undefined>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('loadConfig accepted an invalid environment');
}

/** Everything an operator could see of the error: message, issues, and how a logger prints it. */
function everythingShown(error: ConfigError): string {
  return [error.message, JSON.stringify(error.issues), inspect(error, { depth: 10 })].join('\n');
}

const key = () => randomBytes(32).toString('base64');

describe('BACKUP_DESTINATIONS', () => {
  it('defaults to the local directory only, with the documented copy settings', () => {
    const config = loadConfig(minimal);
    expect(config.BACKUP_DESTINATIONS).toEqual(['local']);
    expect(config.S3_DESTINATIONS).toEqual([]);
    expect(config.BACKUP_COPY_ATTEMPTS).toBe(3);
    expect(config.BACKUP_COPY_RETRY_DELAY_MS).toBe(2_000);
    expect(config.CATALOG_REBUILD_ON_START).toBe(true);
    expect(config.BACKUP_ENCRYPTION_KEY).toBeUndefined();
    expect(config.BACKUP_ENCRYPTION_PASSPHRASE).toBeUndefined();
    expect(config.BACKUP_ENCRYPTION_OLD_KEYS).toEqual([]);
  });

  it('names S3 destinations that are configured but left out of the list', () => {
    const config = loadConfig({
      ...minimal,
      BACKUP_DESTINATIONS: 'local,one',
      ...s3('one'),
      ...s3('spare'),
    });
    expect(config.S3_DESTINATIONS.map((destination) => destination.name)).toEqual(['one']);
    expect(config.UNUSED_S3_DESTINATIONS).toEqual(['spare']);
    expect(
      loadConfig({ ...minimal, BACKUP_DESTINATIONS: 'local,one', ...s3('one') })
        .UNUSED_S3_DESTINATIONS,
    ).toEqual([]);
  });

  it('reads names case-insensitively, trimmed, empty entries ignored, in the order given', () => {
    const config = loadConfig({
      ...minimal,
      BACKUP_DESTINATIONS: ' Two , LOCAL,, one ,',
      ...s3('one'),
      ...s3('two'),
    });
    expect(config.BACKUP_DESTINATIONS).toEqual(['two', 'local', 'one']);
    expect(config.S3_DESTINATIONS.map((destination) => destination.name)).toEqual(['two', 'one']);
  });

  it('gives an S3 destination the documented defaults, and no credentials when none are set', () => {
    const config = loadConfig({
      ...minimal,
      BACKUP_DESTINATIONS: 'offsite',
      S3_OFFSITE_BUCKET: 'pgkeep-backups',
    });
    expect(config.S3_DESTINATIONS).toEqual([
      {
        name: 'offsite',
        bucket: 'pgkeep-backups',
        region: 'us-east-1',
        prefix: '',
        forcePathStyle: false,
        required: true,
        checksums: 'when_supported',
        partSizeMinBytes: 16 * 1024 * 1024,
        queueSize: 2,
        maxAttempts: 3,
      },
    ]);
  });

  it('reads every S3_<NAME>_* setting', () => {
    const config = loadConfig({
      ...minimal,
      BACKUP_DESTINATIONS: 'local,offsite',
      ...s3('offsite', {
        REGION: 'eu-west-1',
        ENDPOINT: 'https://s3.example.com',
        PREFIX: 'prod/db',
        FORCE_PATH_STYLE: 'yes',
        SESSION_TOKEN: 'session-token',
        REQUIRED: 'false',
        CHECKSUMS: 'when_required',
        PART_SIZE_MB: '5',
        QUEUE_SIZE: '1',
        MAX_ATTEMPTS: '1',
      }),
      BACKUP_COPY_ATTEMPTS: '5',
      BACKUP_COPY_RETRY_DELAY_MS: '0',
      CATALOG_REBUILD_ON_START: 'false',
    });
    expect(config.S3_DESTINATIONS).toEqual([
      {
        name: 'offsite',
        bucket: 'pgkeep-offsite',
        region: 'eu-west-1',
        endpoint: 'https://s3.example.com',
        prefix: 'prod/db/',
        forcePathStyle: true,
        accessKeyId: 'AKIAEXAMPLEACCESSKEY',
        secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
        sessionToken: 'session-token',
        required: false,
        checksums: 'when_required',
        partSizeMinBytes: 5 * 1024 * 1024,
        queueSize: 1,
        maxAttempts: 1,
      },
    ]);
    expect(config.BACKUP_COPY_ATTEMPTS).toBe(5);
    expect(config.BACKUP_COPY_RETRY_DELAY_MS).toBe(0);
    expect(config.CATALOG_REBUILD_ON_START).toBe(false);
  });

  it.each([
    ['', ''],
    ['prod', 'prod/'],
    ['prod/', 'prod/'],
    ['team-a/pg.keep/', 'team-a/pg.keep/'],
    ['a/b', 'a/b/'],
  ])('normalises the key prefix %j to %j', (given, expected) => {
    const config = loadConfig({
      ...minimal,
      BACKUP_DESTINATIONS: 'offsite',
      ...s3('offsite', { PREFIX: given }),
    });
    expect(config.S3_DESTINATIONS[0]?.prefix).toBe(expected);
  });

  it.each(['/absolute', 'up/../and/out', 'with space'])(
    'refuses the key prefix %j, naming the key',
    (prefix) => {
      const error = configError({
        ...minimal,
        BACKUP_DESTINATIONS: 'offsite',
        ...s3('offsite', { PREFIX: prefix }),
      });
      expect(error.issues).toEqual([expect.stringMatching(/^S3_OFFSITE_PREFIX: /)]);
    },
  );

  it('refuses a destination without S3_<NAME>_BUCKET, naming the key', () => {
    const error = configError({
      ...minimal,
      BACKUP_DESTINATIONS: 'local,offsite',
      S3_OFFSITE_ENDPOINT: 'https://s3.example.com',
    });
    expect(error.issues).toEqual([expect.stringMatching(/^S3_OFFSITE_BUCKET: /)]);
  });

  it('refuses a name with no S3 settings at all (a typo in the list), naming its bucket key', () => {
    const error = configError({
      ...minimal,
      BACKUP_DESTINATIONS: 'local,ofsite',
      ...s3('offsite'),
    });
    expect(error.issues).toEqual([expect.stringMatching(/^S3_OFSITE_BUCKET: /)]);
  });

  it('refuses a bucket name S3 would refuse', () => {
    const error = configError({
      ...minimal,
      BACKUP_DESTINATIONS: 'offsite',
      S3_OFFSITE_BUCKET: 'My_Backups',
    });
    expect(error.issues).toEqual(['S3_OFFSITE_BUCKET: must be an S3 bucket name (3-63 chars)']);
  });

  it('reports every broken destination at once', () => {
    const error = configError({
      ...minimal,
      BACKUP_DESTINATIONS: 'one,two',
      S3_ONE_PART_SIZE_MB: '4',
      ...s3('two', { QUEUE_SIZE: '0' }),
    });
    expect(error.issues).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^S3_ONE_BUCKET: /),
        expect.stringMatching(/^S3_ONE_PART_SIZE_MB: /),
        expect.stringMatching(/^S3_TWO_QUEUE_SIZE: /),
      ]),
    );
    expect(error.issues).toHaveLength(3);
  });

  it('refuses a destination named twice', () => {
    const error = configError({
      ...minimal,
      BACKUP_DESTINATIONS: 'local,offsite,OFFSITE',
      ...s3('offsite'),
    });
    expect(error.issues).toEqual(['BACKUP_DESTINATIONS: names a destination twice']);
  });

  it.each([
    ['off-site', 'a dash'],
    ['1st', 'a leading digit'],
    [`d${'x'.repeat(32)}`, 'more than 32 characters'],
  ])('refuses the destination name %j (%s)', (name) => {
    const error = configError({ ...minimal, BACKUP_DESTINATIONS: `local,${name}` });
    expect(error.issues).toEqual([expect.stringMatching(/^BACKUP_DESTINATIONS\.1: /)]);
  });

  it('refuses a list that names nothing', () => {
    const error = configError({ ...minimal, BACKUP_DESTINATIONS: ' , ,' });
    expect(error.issues).toEqual(['BACKUP_DESTINATIONS: must name at least one destination']);
  });

  it('refuses an access key id without its secret, and the reverse', () => {
    const withoutSecret = configError({
      ...minimal,
      BACKUP_DESTINATIONS: 'offsite',
      S3_OFFSITE_BUCKET: 'pgkeep-offsite',
      S3_OFFSITE_ACCESS_KEY_ID: 'AKIAEXAMPLEACCESSKEY',
    });
    expect(withoutSecret.issues).toEqual([
      'S3_OFFSITE_SECRET_ACCESS_KEY: ACCESS_KEY_ID and SECRET_ACCESS_KEY go together',
    ]);
    const withoutId = configError({
      ...minimal,
      BACKUP_DESTINATIONS: 'offsite',
      S3_OFFSITE_BUCKET: 'pgkeep-offsite',
      S3_OFFSITE_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
    });
    expect(withoutId.issues).toEqual([
      'S3_OFFSITE_SECRET_ACCESS_KEY: ACCESS_KEY_ID and SECRET_ACCESS_KEY go together',
    ]);
    expect(everythingShown(withoutId)).not.toContain('wJalrXUtnFEMI');
  });

  it('refuses copy attempts and delays out of range', () => {
    const error = configError({
      ...minimal,
      BACKUP_COPY_ATTEMPTS: '0',
      BACKUP_COPY_RETRY_DELAY_MS: '-1',
    });
    expect(error.issues).toEqual([
      expect.stringMatching(/^BACKUP_COPY_ATTEMPTS: /),
      expect.stringMatching(/^BACKUP_COPY_RETRY_DELAY_MS: /),
    ]);
  });
});

describe('encryption keys', () => {
  it('accepts a 32-byte key in standard or url-safe base64, and a list of old ones', () => {
    const bytes = randomBytes(32);
    // A leading 0xfb byte makes the standard encoding start with '+' and the url-safe one '-'.
    bytes[0] = 0xfb;
    const standard = bytes.toString('base64');
    const urlSafe = bytes.toString('base64url');
    const old = [key(), key()];
    expect(loadConfig({ ...minimal, BACKUP_ENCRYPTION_KEY: standard }).BACKUP_ENCRYPTION_KEY).toBe(
      standard,
    );
    const config = loadConfig({
      ...minimal,
      BACKUP_ENCRYPTION_KEY: urlSafe,
      BACKUP_ENCRYPTION_OLD_KEYS: ` ${old[0]} ,, ${old[1]} `,
    });
    expect(config.BACKUP_ENCRYPTION_KEY).toBe(urlSafe);
    expect(config.BACKUP_ENCRYPTION_OLD_KEYS).toEqual(old);
  });

  it.each([
    ['16 bytes', randomBytes(16).toString('base64')],
    ['31 bytes', randomBytes(31).toString('base64')],
    ['33 bytes', randomBytes(33).toString('base64')],
    ['64 bytes', randomBytes(64).toString('base64')],
    ['hex instead of base64', randomBytes(32).toString('hex')],
    ['base64 with a character that is not', `${key().slice(0, 20)}!${key().slice(21)}`],
  ])('refuses a key of %s without showing it', (_what, value) => {
    const error = configError({ ...minimal, BACKUP_ENCRYPTION_KEY: value });
    expect(error.issues).toEqual([
      'BACKUP_ENCRYPTION_KEY: must be 32 bytes in base64 (openssl rand -base64 32)',
    ]);
    expect(everythingShown(error)).not.toContain(value);
    expect(everythingShown(error)).not.toContain(value.slice(0, 12));
  });

  it('refuses a list of old keys with one bad entry, showing none of them', () => {
    const good = key();
    const bad = randomBytes(24).toString('base64');
    const error = configError({ ...minimal, BACKUP_ENCRYPTION_OLD_KEYS: `${good},${bad}` });
    expect(error.issues).toEqual([expect.stringMatching(/^BACKUP_ENCRYPTION_OLD_KEYS\.1: /)]);
    expect(everythingShown(error)).not.toContain(good);
    expect(everythingShown(error)).not.toContain(bad);
  });

  it('refuses a key and a passphrase together, showing neither', () => {
    const value = key();
    const passphrase = 'correct horse battery staple';
    const error = configError({
      ...minimal,
      BACKUP_ENCRYPTION_KEY: value,
      BACKUP_ENCRYPTION_PASSPHRASE: passphrase,
    });
    expect(error.issues).toEqual([
      'BACKUP_ENCRYPTION_PASSPHRASE: set BACKUP_ENCRYPTION_KEY or BACKUP_ENCRYPTION_PASSPHRASE, not both',
    ]);
    expect(everythingShown(error)).not.toContain(value);
    expect(everythingShown(error)).not.toContain(passphrase);
  });

  it('refuses a passphrase shorter than 12 characters without showing it', () => {
    const error = configError({ ...minimal, BACKUP_ENCRYPTION_PASSPHRASE: 'hunter2hunt' });
    expect(error.issues).toEqual(['BACKUP_ENCRYPTION_PASSPHRASE: must be at least 12 characters']);
    expect(everythingShown(error)).not.toContain('hunter2hunt');
  });
});

describe('secrets in configuration errors', () => {
  it('shows no secret of a broken environment, whatever else is wrong with it', () => {
    const secrets = {
      encryptionKey: randomBytes(20).toString('base64'),
      oldKey: randomBytes(40).toString('base64'),
      passphrase: `passphrase-${randomBytes(8).toString('hex')}`,
      oldPassphrase: `old-passphrase-${randomBytes(8).toString('hex')}`,
      accessKeyId: `AKIA${randomBytes(8).toString('hex').toUpperCase()}`,
      secretAccessKey: randomBytes(30).toString('base64'),
      sessionToken: `token-${randomBytes(12).toString('hex')}`,
      endpointPassword: `pw${randomBytes(8).toString('hex')}`,
    };
    const error = configError({
      ...minimal,
      BACKUP_ENCRYPTION_KEY: secrets.encryptionKey,
      BACKUP_ENCRYPTION_OLD_KEYS: secrets.oldKey,
      BACKUP_ENCRYPTION_PASSPHRASE: secrets.passphrase,
      BACKUP_ENCRYPTION_OLD_PASSPHRASE: secrets.oldPassphrase,
      BACKUP_DESTINATIONS: 'local,offsite',
      S3_OFFSITE_BUCKET: 'Not A Bucket',
      S3_OFFSITE_ENDPOINT: `https://backup:${secrets.endpointPassword}@s3.example.com`,
      S3_OFFSITE_ACCESS_KEY_ID: secrets.accessKeyId,
      S3_OFFSITE_SECRET_ACCESS_KEY: secrets.secretAccessKey,
      S3_OFFSITE_SESSION_TOKEN: secrets.sessionToken,
    });
    // The encryption keys fail the main schema; the S3 block is then not read, so only these.
    expect(error.issues).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^BACKUP_ENCRYPTION_KEY: /),
        expect.stringMatching(/^BACKUP_ENCRYPTION_OLD_KEYS\.0: /),
      ]),
    );
    const shown = everythingShown(error);
    for (const [what, value] of Object.entries(secrets)) {
      expect(shown, `${what} is shown`).not.toContain(value);
    }

    // Once the keys are right, the destination's own errors are reported, still without secrets.
    const s3Error = configError({
      ...minimal,
      BACKUP_ENCRYPTION_KEY: key(),
      BACKUP_DESTINATIONS: 'local,offsite',
      S3_OFFSITE_BUCKET: 'Not A Bucket',
      S3_OFFSITE_ENDPOINT: `https://backup:${secrets.endpointPassword}@s3.example.com`,
      S3_OFFSITE_ACCESS_KEY_ID: secrets.accessKeyId,
      S3_OFFSITE_SECRET_ACCESS_KEY: secrets.secretAccessKey,
      S3_OFFSITE_SESSION_TOKEN: secrets.sessionToken,
    });
    expect(s3Error.issues).toEqual([
      expect.stringMatching(/^S3_OFFSITE_BUCKET: /),
      expect.stringMatching(/^S3_OFFSITE_ENDPOINT: /),
    ]);
    const s3Shown = everythingShown(s3Error);
    for (const [what, value] of Object.entries(secrets)) {
      expect(s3Shown, `${what} is shown`).not.toContain(value);
    }
  });
});
