import { Readable } from 'node:stream';
import { createLogger } from '@pgkeep/core';
import { describe, expect, it } from 'vitest';
import {
  describeS3Error,
  normalizePrefix,
  partSizeFor,
  S3Destination,
  type S3DestinationConfig,
} from './s3-destination.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

describe('partSizeFor', () => {
  it('uses the minimum without a hint or for a small dump', () => {
    expect(partSizeFor(undefined, 16 * MiB)).toBe(16 * MiB);
    expect(partSizeFor(0, 16 * MiB)).toBe(16 * MiB);
    expect(partSizeFor(10 * GiB, 16 * MiB)).toBe(16 * MiB);
  });

  it('never goes below the 5 MiB S3 requires', () => {
    expect(partSizeFor(undefined, 1024)).toBe(5 * MiB);
    expect(partSizeFor(1000, 0)).toBe(5 * MiB);
  });

  it('keeps a dump of twice its estimate under 10,000 parts', () => {
    for (const hint of [200 * GiB, 1000 * GiB, 123_456_789_012]) {
      const part = partSizeFor(hint, 16 * MiB);
      expect(part).toBe(Math.ceil((hint * 2) / 10_000));
      expect(Math.ceil((2 * hint) / part)).toBeLessThanOrEqual(10_000);
    }
  });

  it('never goes above the 5 GiB S3 allows', () => {
    expect(partSizeFor(100 * 1024 * GiB, 16 * MiB)).toBe(5 * GiB);
  });
});

describe('normalizePrefix', () => {
  it.each([
    ['', ''],
    ['/', ''],
    ['pgkeep', 'pgkeep/'],
    ['pgkeep/', 'pgkeep/'],
    ['/pgkeep/prod', 'pgkeep/prod/'],
  ])('%j → %j', (given, expected) => {
    expect(normalizePrefix(given)).toBe(expected);
  });
});

describe('describeS3Error', () => {
  it('names an S3 error by its code and status', () => {
    const error = Object.assign(new Error('Please reduce your request rate.'), {
      name: 'SlowDown',
      $metadata: { httpStatusCode: 503 },
    });
    expect(describeS3Error(error)).toBe('SlowDown (HTTP 503): Please reduce your request rate.');
  });

  it('names a network error by its errno code', () => {
    const error = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    expect(describeS3Error(error)).toBe('ECONNRESET: socket hang up');
  });
});

function config(overrides: Partial<S3DestinationConfig> = {}): S3DestinationConfig {
  return {
    name: 'offsite',
    region: 'eu-west-1',
    bucket: 'backups',
    prefix: 'db/prod',
    forcePathStyle: false,
    required: false,
    checksums: 'when_supported',
    partSizeMinBytes: 16 * MiB,
    queueSize: 2,
    maxAttempts: 3,
    ...overrides,
  };
}

describe('S3Destination', () => {
  const logger = createLogger('silent', 'test');

  it('names locations under the normalized prefix, without credentials', () => {
    const destination = new S3Destination(
      config({ accessKeyId: 'AKIAEXAMPLE', secretAccessKey: 'secret-key' }),
      logger,
    );
    expect(destination.kind).toBe('s3');
    expect(destination.prefix).toBe('db/prod/');
    expect(destination.locationOf('backup-x.dump')).toBe('s3://backups/db/prod/backup-x.dump');
    destination.close();
  });

  it('refuses an object name that would leave the prefix', async () => {
    const destination = new S3Destination(config(), logger);
    for (const name of ['../other/backup.dump', 'a/b', '.hidden', '']) {
      await expect(destination.writeArtifact(name, Readable.from([]))).rejects.toMatchObject({
        code: 'STORAGE_ERROR',
      });
      await expect(destination.statArtifact(name)).rejects.toMatchObject({
        code: 'STORAGE_ERROR',
      });
    }
    await expect(destination.readManifest('../etc')).rejects.toMatchObject({
      code: 'INVALID_BACKUP_ID',
    });
    destination.close();
  });
});
