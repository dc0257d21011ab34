import { createHash, randomBytes } from 'node:crypto';
import type http from 'node:http';
import { PassThrough, Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import {
  AppError,
  artifactFilename,
  type BackupManifest,
  createLogger,
  manifestFilename,
  manifestSchema,
  newBackupId,
} from '@pgkeep/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  S3RVER_CREDENTIALS,
  S3RVER_REGION,
  type S3TestServer,
  s3TestClient,
  startFaultyProxy,
  startS3Server,
} from '../../../test/support/s3-server.js';
import { S3Destination, type S3DestinationConfig } from './s3-destination.js';

const MiB = 1024 * 1024;
const BUCKET = 'pgkeep-int';
const logger = createLogger('silent', 'test');

let s3: S3TestServer;
let raw: S3Client;
const opened: S3Destination[] = [];

beforeAll(async () => {
  s3 = await startS3Server([BUCKET]);
  raw = s3TestClient(s3.endpoint);
});

afterAll(async () => {
  for (const destination of opened) destination.close();
  raw?.destroy();
  await s3?.stop();
});

/** A destination under a prefix of its own, so that no two tests see each other's objects. */
function destination(overrides: Partial<S3DestinationConfig> = {}): S3Destination {
  const created = new S3Destination(
    {
      name: 'offsite',
      endpoint: s3.endpoint,
      region: S3RVER_REGION,
      bucket: BUCKET,
      prefix: `t-${randomBytes(4).toString('hex')}/`,
      forcePathStyle: true,
      ...S3RVER_CREDENTIALS,
      required: true,
      checksums: 'when_supported',
      partSizeMinBytes: 5 * MiB,
      queueSize: 2,
      maxAttempts: 3,
      ...overrides,
    },
    logger,
  );
  opened.push(created);
  return created;
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** `bytes` as a stream of odd-sized pieces, as a compressor's output comes. */
function inPieces(bytes: Buffer): Readable {
  const sizes = [1, 7919, 65_537, 3, 131_071, 524_287];
  return Readable.from(
    (function* () {
      for (let offset = 0, turn = 0; offset < bytes.length; turn += 1) {
        const size = sizes[turn % sizes.length] ?? 1;
        yield bytes.subarray(offset, offset + size);
        offset += size;
      }
    })(),
  );
}

function artifactName(id = newBackupId()): string {
  return artifactFilename(id, 'custom', 'zstd');
}

function manifestFor(id: string, createdAt: string): BackupManifest {
  const sha = 'ab'.repeat(32);
  return manifestSchema.parse({
    manifestVersion: 2,
    id,
    filename: artifactName(id),
    size: 1234,
    sha256: sha,
    createdAt,
    completedAt: createdAt,
    durationMs: 0,
    type: 'manual',
    status: 'completed',
    format: 'custom',
    compression: 'zstd',
    tables: null,
    database: 'app',
    serverVersion: '16.4',
    pgDumpVersion: '16.4',
    rowCounts: {},
    requestedBy: 'test',
    label: null,
    jobId: null,
    encryption: null,
    copies: [
      { destination: 'offsite', location: 'x', size: 1234, sha256: sha, writtenAt: createdAt },
    ],
  });
}

async function keysUnder(prefix: string): Promise<string[]> {
  const listed = await raw.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
  return (listed.Contents ?? []).map((object) => object.Key ?? '').sort();
}

async function putRaw(key: string, body: string | Buffer): Promise<void> {
  await raw.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
}

function isUploadPart(req: http.IncomingMessage): boolean {
  return req.method === 'PUT' && /[?&]partNumber=/.test(req.url ?? '');
}

function isAbortMultipartUpload(req: http.IncomingMessage): boolean {
  return req.method === 'DELETE' && /[?&]uploadId=/.test(req.url ?? '');
}

async function rejection(promise: Promise<unknown>): Promise<AppError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(AppError);
  return error as AppError;
}

describe('S3Destination artifacts', () => {
  it('stores exactly the bytes it is given and reads them back', async () => {
    const target = destination();
    const bytes = randomBytes(3 * MiB + 17);
    const filename = artifactName();
    let reported = 0;
    const staged = await target.writeArtifact(filename, inPieces(bytes), {
      onBytes: (written) => {
        reported = written;
      },
    });
    await staged.commit();

    expect(staged).toMatchObject({ filename, size: bytes.length, sha256: sha256(bytes) });
    expect(reported).toBe(bytes.length);
    expect(target.locationOf(filename)).toBe(`s3://${BUCKET}/${target.prefix}${filename}`);
    expect(await target.statArtifact(filename)).toEqual({ size: bytes.length });
    expect(sha256(await buffer(await target.openArtifact(filename)))).toBe(sha256(bytes));
  });

  it('sizes upload parts from the size hint', async () => {
    const bytes = randomBytes(12 * 1000 * 1000);
    const counted = async (sizeHint: number) => {
      let parts = 0;
      const proxy = await startFaultyProxy(s3.endpoint, {
        match: (req) => {
          if (isUploadPart(req)) parts += 1;
          return false;
        },
        failures: 0,
        mode: 'status-503',
      });
      try {
        const target = destination({ endpoint: proxy.endpoint });
        const filename = artifactName();
        const staged = await target.writeArtifact(filename, inPieces(bytes), { sizeHint });
        expect(staged.sha256).toBe(sha256(bytes));
        expect(await target.statArtifact(filename)).toEqual({ size: bytes.length });
        expect(sha256(await buffer(await target.openArtifact(filename)))).toBe(sha256(bytes));
        return parts;
      } finally {
        await proxy.stop();
      }
    };
    // As expected: 5 MiB parts. A 40 GB estimate: 8 MB parts, so that 80 GB still fit.
    expect(await counted(bytes.length)).toBe(3);
    expect(await counted(40e9)).toBe(2);
  });

  it('reads a byte range', async () => {
    const target = destination();
    const bytes = randomBytes(200_000);
    const filename = artifactName();
    await target.writeArtifact(filename, inPieces(bytes));

    const middle = await buffer(await target.openArtifact(filename, { start: 1000, end: 65_999 }));
    expect(middle.equals(bytes.subarray(1000, 66_000))).toBe(true);
    const last = await buffer(
      await target.openArtifact(filename, { start: bytes.length - 5, end: bytes.length - 1 }),
    );
    expect(last.equals(bytes.subarray(-5))).toBe(true);
  });

  it('says ARTIFACT_MISSING for an absent artifact and removes idempotently', async () => {
    const target = destination();
    const filename = artifactName();
    expect((await rejection(target.openArtifact(filename))).code).toBe('ARTIFACT_MISSING');
    expect(await target.statArtifact(filename)).toBeUndefined();

    const staged = await target.writeArtifact(filename, Readable.from([Buffer.from('dump')]));
    await staged.discard();
    expect(await target.statArtifact(filename)).toBeUndefined();
    await target.removeArtifact(filename);
    await staged.discard();
  });

  it('rejects with the source error when the source fails, leaving nothing', async () => {
    const target = destination();
    const source = new PassThrough();
    const written = target.writeArtifact(artifactName(), source);
    source.write(randomBytes(6 * MiB));
    source.destroy(new Error('pg_dump died'));
    await expect(written).rejects.toThrow('pg_dump died');
    expect(await keysUnder(target.prefix)).toEqual([]);
  });

  it('rejects an abort during an upload, leaving nothing', async () => {
    const controller = new AbortController();
    let multipartAborts = 0;
    // The abort comes while the first part is on its way, from the proxy that sees it pass.
    const proxy = await startFaultyProxy(s3.endpoint, {
      match: (req) => {
        if (isUploadPart(req)) controller.abort();
        if (isAbortMultipartUpload(req)) multipartAborts += 1;
        return false;
      },
      failures: 0,
      mode: 'status-503',
    });
    try {
      const target = destination({ endpoint: proxy.endpoint });
      const source = new PassThrough();
      const written = target.writeArtifact(artifactName(), source, { signal: controller.signal });
      // More than a part, then the source stalls as a slow pg_dump would.
      source.write(randomBytes(6 * MiB));

      expect((await rejection(written)).code).toBe('JOB_ABORTED');
      expect(source.destroyed).toBe(true);
      expect(multipartAborts).toBe(1);
      expect(await keysUnder(target.prefix)).toEqual([]);
    } finally {
      await proxy.stop();
    }
  });

  it('rejects a write whose signal is already aborted, touching nothing', async () => {
    const target = destination();
    const source = Readable.from([Buffer.from('dump')]);
    const error = await rejection(
      target.writeArtifact(artifactName(), source, { signal: AbortSignal.abort() }),
    );
    expect(error.code).toBe('JOB_ABORTED');
    expect(source.destroyed).toBe(true);
    expect(await keysUnder(target.prefix)).toEqual([]);
  });

  it.each(['when_required', 'when_supported'] as const)(
    'works with checksums %s',
    async (checksums) => {
      const target = destination({ checksums });
      const bytes = randomBytes(11 * MiB + 3);
      const filename = artifactName();
      const staged = await target.writeArtifact(filename, inPieces(bytes));
      expect(staged.sha256).toBe(sha256(bytes));
      expect(sha256(await buffer(await target.openArtifact(filename)))).toBe(sha256(bytes));
      const id = newBackupId();
      await target.writeManifest(manifestFor(id, new Date().toISOString()));
      expect((await target.readManifest(id))?.id).toBe(id);
    },
  );
});

describe('S3Destination copy failures', () => {
  it('fails with COPY_FAILED when an upload part is refused, leaving no object', async () => {
    let multipartAborts = 0;
    const proxy = await startFaultyProxy(s3.endpoint, {
      match: (req) => {
        if (isAbortMultipartUpload(req)) multipartAborts += 1;
        return isUploadPart(req);
      },
      failures: 1,
      mode: 'status-503',
    });
    try {
      const target = destination({ endpoint: proxy.endpoint, maxAttempts: 1 });
      const filename = artifactName();
      const error = await rejection(
        target.writeArtifact(filename, inPieces(randomBytes(12 * MiB))),
      );
      expect(error.code).toBe('COPY_FAILED');
      expect(error.message).toContain('offsite');
      expect(error.message).toContain('SlowDown');
      expect(error.message).not.toContain(S3RVER_CREDENTIALS.secretAccessKey);
      expect(proxy.failed()).toBe(1);
      // The parts are given up (s3rver refuses that request, so it keeps them on its disk).
      expect(multipartAborts).toBe(1);
      expect(await keysUnder(target.prefix)).toEqual([]);
    } finally {
      await proxy.stop();
    }
  });

  it('fails with COPY_FAILED when the connection drops', async () => {
    const proxy = await startFaultyProxy(s3.endpoint, {
      match: isUploadPart,
      failures: 1,
      mode: 'reset',
    });
    try {
      const target = destination({ endpoint: proxy.endpoint, maxAttempts: 1 });
      const error = await rejection(
        target.writeArtifact(artifactName(), inPieces(randomBytes(12 * MiB))),
      );
      expect(error.code).toBe('COPY_FAILED');
      expect(error.retryable).toBe(true);
      expect(await keysUnder(target.prefix)).toEqual([]);
    } finally {
      await proxy.stop();
    }
  });

  it("survives one refused part through the SDK's own retry", async () => {
    const proxy = await startFaultyProxy(s3.endpoint, {
      match: isUploadPart,
      failures: 1,
      mode: 'status-503',
    });
    try {
      const target = destination({ endpoint: proxy.endpoint, maxAttempts: 3 });
      const bytes = randomBytes(12 * MiB);
      const filename = artifactName();
      const staged = await target.writeArtifact(filename, inPieces(bytes));
      expect(proxy.failed()).toBe(1);
      expect(staged.sha256).toBe(sha256(bytes));
      expect(sha256(await buffer(await target.openArtifact(filename)))).toBe(sha256(bytes));
    } finally {
      await proxy.stop();
    }
  });
});

describe('S3Destination manifests', () => {
  it('writes, reads, lists newest first and reports invalid ones', async () => {
    const target = destination();
    const ids = [newBackupId(), newBackupId(), newBackupId()];
    const times = ['2026-03-01T10:00:00.000Z', '2026-03-03T10:00:00Z', '2026-03-02T10:00:00.000Z'];
    for (const [index, id] of ids.entries()) {
      await target.writeManifest(manifestFor(id, times[index] ?? ''));
    }
    const brokenId = newBackupId();
    await putRaw(`${target.prefix}${manifestFilename(brokenId)}`, '{"not": "a manifest"}');
    // A deeper "folder" is not this destination's.
    await putRaw(
      `${target.prefix}archive/${manifestFilename(newBackupId())}`,
      JSON.stringify(manifestFor(newBackupId(), times[0] ?? '')),
    );

    expect(await target.readManifest(ids[0] ?? '')).toMatchObject({ id: ids[0] });
    expect(await target.readManifest(newBackupId())).toBeUndefined();
    expect((await rejection(target.readManifest(brokenId))).code).toBe('MANIFEST_INVALID');
    expect((await rejection(target.readManifest('../etc/passwd'))).code).toBe('INVALID_BACKUP_ID');

    const { manifests, invalid } = await target.listManifests();
    expect(manifests.map((manifest) => manifest.id)).toEqual([ids[1], ids[2], ids[0]]);
    expect(invalid).toEqual([{ file: manifestFilename(brokenId), reason: expect.any(String) }]);

    await target.deleteManifest(ids[1] ?? '');
    await target.deleteManifest(ids[1] ?? '');
    expect(await target.readManifest(ids[1] ?? '')).toBeUndefined();
  });

  it('keeps destinations under different prefixes apart', async () => {
    const alpha = destination({ prefix: `alpha-${randomBytes(3).toString('hex')}` });
    const beta = destination({ prefix: `beta-${randomBytes(3).toString('hex')}/` });
    const root = destination({ prefix: '' });
    const alphaId = newBackupId();
    const betaId = newBackupId();
    await alpha.writeManifest(manifestFor(alphaId, '2026-03-01T10:00:00Z'));
    await beta.writeManifest(manifestFor(betaId, '2026-03-01T10:00:00Z'));

    expect((await alpha.listManifests()).manifests.map((m) => m.id)).toEqual([alphaId]);
    expect((await beta.listManifests()).manifests.map((m) => m.id)).toEqual([betaId]);
    expect(await alpha.readManifest(betaId)).toBeUndefined();
    const seenFromRoot = (await root.listManifests()).manifests.map((m) => m.id);
    expect(seenFromRoot).not.toContain(alphaId);
    expect(seenFromRoot).not.toContain(betaId);
  });
});

describe('S3Destination upkeep', () => {
  it('sweeps orphan artifacts and nothing else', async () => {
    const target = destination();
    const orphan = artifactName();
    const keptId = newBackupId();
    const kept = artifactName(keptId);
    const foreign = [
      'notes.txt',
      // The panel's old files carry no random suffix: never pgkeep's to remove.
      'backup-2026-01-22T16-30-00-000Z.sql',
      `archive/${artifactName()}`,
    ];
    for (const name of [orphan, kept, ...foreign]) await putRaw(`${target.prefix}${name}`, 'x');
    await target.writeManifest(manifestFor(keptId, '2026-03-01T10:00:00Z'));

    expect(await target.sweepLeftovers()).toEqual([orphan]);
    expect(await keysUnder(target.prefix)).toEqual(
      [kept, manifestFilename(keptId), ...foreign].map((name) => `${target.prefix}${name}`).sort(),
    );
  });

  it('checks that it can write, leaving nothing behind', async () => {
    const target = destination();
    await target.checkWritable();
    expect(await keysUnder(target.prefix)).toEqual([]);

    const error = await rejection(destination({ bucket: 'no-such-bucket' }).checkWritable());
    expect(error.code).toBe('STORAGE_ERROR');
    expect(error.message).toContain('NoSuchBucket');
  });
});
