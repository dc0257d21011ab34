import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import {
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import {
  AppError,
  artifactFilename,
  type BackupManifest,
  type CatalogKeys,
  createLogger,
  manifestFilename,
  manifestSchema,
  newBackupId,
} from '@pgkeep/core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type FaultyProxy,
  S3RVER_CREDENTIALS,
  S3RVER_REGION,
  type S3TestServer,
  s3TestClient,
  startFaultyProxy,
  startS3Server,
} from '../../../test/support/s3-server.js';
import { BackupStore, type WrittenCopies } from './backup-store.js';
import type { Destination } from './destination.js';
import { LocalStorage } from './local-storage.js';
import { S3Destination } from './s3-destination.js';

const MiB = 1024 * 1024;
const BUCKET = 'pgkeep-store';
const logger = createLogger('silent', 'test');

let s3: S3TestServer;
let raw: S3Client;
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  s3 = await startS3Server([BUCKET]);
  raw = s3TestClient(s3.endpoint);
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

afterAll(async () => {
  raw?.destroy();
  await s3?.stop();
});

async function localDir(): Promise<LocalStorage> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-store-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return new LocalStorage(dir, logger);
}

/** An S3 destination under a prefix of its own, so no two tests see each other's objects. */
function bucket(
  name: string,
  options: { endpoint?: string; prefix?: string; keys?: CatalogKeys } = {},
) {
  const destination = new S3Destination(
    {
      name,
      endpoint: options.endpoint ?? s3.endpoint,
      region: S3RVER_REGION,
      bucket: BUCKET,
      prefix: options.prefix ?? `t-${randomBytes(4).toString('hex')}/`,
      forcePathStyle: true,
      ...S3RVER_CREDENTIALS,
      required: true,
      checksums: 'when_supported',
      partSizeMinBytes: 5 * MiB,
      queueSize: 1,
      // One request each: a refused or unreachable request fails the operation at once.
      maxAttempts: 1,
    },
    logger,
    options.keys,
  );
  cleanups.push(() => destination.close());
  return destination;
}

async function proxyTo(rule: Parameters<typeof startFaultyProxy>[1]): Promise<FaultyProxy> {
  const proxy = await startFaultyProxy(s3.endpoint, rule);
  cleanups.push(() => proxy.stop().catch(() => {}));
  return proxy;
}

const newStore = (catalog: LocalStorage, destinations: Destination[]) =>
  new BackupStore(catalog, destinations, logger, { copyAttempts: 2, copyRetryDelayMs: 0 });

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** `bytes` in odd-sized pieces, as a compressor's output comes. */
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

/** A source that gives `bytes` and then fails, as a pg_dump that dies halfway. */
function failingAfter(bytes: number): Readable {
  return Readable.from(
    (async function* () {
      for (let sent = 0; sent < bytes; sent += MiB) yield randomBytes(MiB);
      throw new Error('pg_dump died halfway');
    })(),
  );
}

async function objectKeys(prefix: string): Promise<string[]> {
  const listed = await raw.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
  return (listed.Contents ?? []).map((object) => object.Key ?? '').sort();
}

async function objectBytes(key: string): Promise<Buffer> {
  const object = await raw.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  const body = object.Body as { transformToByteArray(): Promise<Uint8Array> };
  return Buffer.from(await body.transformToByteArray());
}

function newFilename(): { id: string; filename: string } {
  const id = newBackupId();
  return { id, filename: artifactFilename(id, 'custom', 'none') };
}

function manifestOf(id: string, written: WrittenCopies): BackupManifest {
  const now = new Date().toISOString();
  return manifestSchema.parse({
    manifestVersion: 2,
    id,
    filename: written.filename,
    size: written.size,
    sha256: written.sha256,
    createdAt: now,
    completedAt: now,
    durationMs: 0,
    type: 'manual',
    status: 'completed',
    format: 'custom',
    compression: 'none',
    tables: null,
    database: 'app',
    serverVersion: '15.0',
    pgDumpVersion: '15.0',
    rowCounts: {},
    requestedBy: 'test',
    label: null,
    jobId: null,
    encryption: null,
    copies: written.copies,
    failedCopies: written.failedCopies,
  });
}

/** A complete backup of `bytes` in every destination of `store`, listed in its catalog. */
async function storedBackup(store: BackupStore, bytes: Buffer): Promise<BackupManifest> {
  const { id, filename } = newFilename();
  const written = await store.writeCopies(filename, inPieces(bytes));
  const manifest = manifestOf(id, written);
  await store.commitManifest(manifest);
  return manifest;
}

describe('BackupStore.writeCopies', () => {
  it('writes the same bytes to the local directory and the bucket, listed only once committed', async () => {
    const local = await localDir();
    const offsite = bucket('offsite');
    const store = newStore(local, [local, offsite]);
    // Larger than one 5 MiB part: the bucket copy is a multipart upload.
    const bytes = randomBytes(12 * MiB + 4321);
    const { id, filename } = newFilename();

    const written = await store.writeCopies(filename, inPieces(bytes));
    expect(written).toMatchObject({ filename, size: bytes.length, sha256: sha256(bytes) });
    expect(written.failedCopies).toEqual([]);
    expect(written.copies.map((copy) => [copy.destination, copy.location])).toEqual([
      ['local', path.join(local.dir, filename)],
      ['offsite', `s3://${BUCKET}/${offsite.prefix}${filename}`],
    ]);
    expect((await readFile(path.join(local.dir, filename))).equals(bytes)).toBe(true);
    expect((await objectBytes(`${offsite.prefix}${filename}`)).equals(bytes)).toBe(true);
    // Not a backup yet: no manifest anywhere.
    expect((await store.listManifests()).manifests).toEqual([]);
    expect(await objectKeys(offsite.prefix)).toEqual([`${offsite.prefix}${filename}`]);

    const manifest = manifestOf(id, written);
    await store.commitManifest(manifest);
    expect((await store.listManifests()).manifests.map((listed) => listed.id)).toEqual([id]);
    expect(await offsite.readManifest(id)).toEqual(manifest);
  });

  it('writes a bucket copy again from the local copy when an upload part is refused', async () => {
    const local = await localDir();
    // The second part of the first upload is refused once; the SDK does not retry it.
    const proxy = await proxyTo({
      match: (req) => req.method === 'PUT' && /[?&]partNumber=2(&|$)/.test(req.url ?? ''),
      failures: 1,
      mode: 'status-503',
    });
    const offsite = bucket('offsite', { endpoint: proxy.endpoint });
    const store = newStore(local, [local, offsite]);
    const bytes = randomBytes(11 * MiB);
    const { filename } = newFilename();

    const written = await store.writeCopies(filename, inPieces(bytes));
    expect(proxy.failed()).toBe(1);
    expect(written.copies.map((copy) => copy.destination)).toEqual(['local', 'offsite']);
    expect(written.failedCopies).toEqual([]);
    expect((await objectBytes(`${offsite.prefix}${filename}`)).equals(bytes)).toBe(true);
  });

  it('fails without a local copy to fall back on when a required bucket refuses, leaving nothing', async () => {
    const catalog = await localDir();
    const proxy = await proxyTo({
      match: (req) => req.method === 'PUT' || req.method === 'POST',
      failures: 1_000,
      mode: 'status-503',
    });
    const one = bucket('one');
    const two = bucket('two', { endpoint: proxy.endpoint });
    const store = newStore(catalog, [one, two]);
    const { filename } = newFilename();

    const failure = await store.writeCopies(filename, inPieces(randomBytes(7 * MiB))).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toMatchObject({ code: 'COPY_FAILED' });
    expect((failure as AppError).message).toContain('two');
    expect(await objectKeys(one.prefix)).toEqual([]);
    expect(await objectKeys(two.prefix)).toEqual([]);
    expect(await readdir(catalog.dir)).toEqual([]);
  });

  it('leaves nothing anywhere when the source fails halfway', async () => {
    const local = await localDir();
    const offsite = bucket('offsite');
    const store = newStore(local, [local, offsite]);
    const { filename } = newFilename();

    // Past the first 5 MiB part: the bucket has a multipart upload under way when it fails.
    await expect(store.writeCopies(filename, failingAfter(7 * MiB))).rejects.toThrow(
      'pg_dump died halfway',
    );
    expect(await readdir(local.dir)).toEqual([]);
    expect(await objectKeys(offsite.prefix)).toEqual([]);
    expect((await store.listManifests()).manifests).toEqual([]);
  });

  it('leaves nothing anywhere when beforeCommit refuses the bytes', async () => {
    const local = await localDir();
    const offsite = bucket('offsite');
    const store = newStore(local, [local, offsite]);
    const { filename } = newFilename();
    const refusal = new AppError('PG_DUMP_FAILED', 'pg_dump exited with code 1');

    await expect(
      store.writeCopies(filename, inPieces(randomBytes(3 * MiB)), {
        beforeCommit: async () => {
          throw refusal;
        },
      }),
    ).rejects.toBe(refusal);
    expect(await readdir(local.dir)).toEqual([]);
    expect(await objectKeys(offsite.prefix)).toEqual([]);
  });
});

describe('BackupStore.deleteBackup', () => {
  it('keeps the backup listed with the copies left when a bucket cannot be reached, and finishes on a retry', async () => {
    const local = await localDir();
    const near = bucket('near');
    const proxy = await proxyTo({ match: () => false, failures: 0, mode: 'status-503' });
    const farPrefix = `t-${randomBytes(4).toString('hex')}/`;
    const far = bucket('far', { endpoint: proxy.endpoint, prefix: farPrefix });
    const store = newStore(local, [local, near, far]);
    const manifest = await storedBackup(store, randomBytes(256 * 1024));
    expect(manifest.copies.map((copy) => copy.destination)).toEqual(['local', 'near', 'far']);

    await proxy.stop();
    const failure = await store.deleteBackup(manifest).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(AppError);
    expect(failure).toMatchObject({ code: 'STORAGE_ERROR', retryable: true });
    expect((failure as AppError).message).toContain('far');

    // Still listed, with the copies that are still there.
    const listed = await store.getManifest(manifest.id);
    expect(listed?.copies.map((copy) => copy.destination)).toEqual(['local', 'far']);
    expect(await objectKeys(near.prefix)).toEqual([]);
    expect(await objectKeys(farPrefix)).toEqual(
      [`${farPrefix}${manifest.filename}`, `${farPrefix}${manifestFilename(manifest.id)}`].sort(),
    );
    expect((await readdir(local.dir)).sort()).toEqual(
      [manifest.filename, manifestFilename(manifest.id)].sort(),
    );

    // The bucket is back: the delete, run again on what is listed, removes the rest.
    const farAgain = bucket('far', { prefix: farPrefix });
    const again = newStore(local, [local, near, farAgain]);
    await again.deleteBackup(listed as BackupManifest);
    expect(await again.getManifest(manifest.id)).toBeUndefined();
    expect(await objectKeys(farPrefix)).toEqual([]);
    expect(await readdir(local.dir)).toEqual([]);
  });
});

describe('BackupStore.rebuildCatalog', () => {
  it('adds back the manifests a bucket holds, keeping a local copy only where its artifact is whole', async () => {
    const local = await localDir();
    const offsite = bucket('offsite');
    const store = newStore(local, [local, offsite]);
    const intact = await storedBackup(store, randomBytes(64 * 1024));
    const gone = await storedBackup(store, randomBytes(64 * 1024));
    const cut = await storedBackup(store, randomBytes(64 * 1024));

    // The catalog is lost; one local artifact with it, another is cut short.
    for (const manifest of [intact, gone, cut]) {
      await rm(path.join(local.dir, manifestFilename(manifest.id)));
    }
    await rm(path.join(local.dir, gone.filename));
    await truncate(path.join(local.dir, cut.filename), 1000);
    expect((await store.listManifests()).manifests).toEqual([]);

    // A second bucket that cannot be reached is reported and does not stop the rebuild.
    const proxy = await proxyTo({ match: () => false, failures: 0, mode: 'status-503' });
    const unreachable = bucket('far', { endpoint: proxy.endpoint });
    await proxy.stop();
    const rebuilt = newStore(local, [local, offsite, unreachable]);
    // A dry run says the same and leaves the directory as it was, byte for byte.
    const snapshot = async () =>
      Promise.all(
        (await readdir(local.dir))
          .sort()
          .map(async (name) => [name, await readFile(path.join(local.dir, name))]),
      );
    const before = await snapshot();
    const dryRun = await rebuilt.rebuildCatalog({ dryRun: true });
    expect(dryRun.added.sort()).toEqual([intact.id, gone.id, cut.id].sort());
    expect(dryRun.unreachable).toEqual(['far']);
    expect(await snapshot()).toEqual(before);
    const result = await rebuilt.rebuildCatalog();
    expect(result.added.sort()).toEqual([intact.id, gone.id, cut.id].sort());
    expect(result.unreachable).toEqual(['far']);

    const copiesOf = async (id: string) =>
      (await rebuilt.getManifest(id))?.copies.map((copy) => copy.destination);
    expect(await copiesOf(intact.id)).toEqual(['local', 'offsite']);
    expect(await copiesOf(gone.id)).toEqual(['offsite']);
    expect(await copiesOf(cut.id)).toEqual(['offsite']);
    // The rest of each manifest comes back as it was.
    expect(await rebuilt.getManifest(intact.id)).toEqual(intact);

    // Run again, it finds nothing more to add.
    expect((await rebuilt.rebuildCatalog()).added).toEqual([]);
  });
});

describe('BackupStore.signCatalog', () => {
  const keyA = randomBytes(32);
  const keyB = randomBytes(32);

  it('signs, once, the backups made before a catalog key, locally and in the bucket; unsigned ones after that are refused', async () => {
    const plainLocal = await localDir();
    const prefix = `t-${randomBytes(4).toString('hex')}/`;
    const plain = newStore(plainLocal, [plainLocal, bucket('offsite', { prefix })]);
    const before = [
      await storedBackup(plain, randomBytes(4096)),
      await storedBackup(plain, randomBytes(4096)),
    ];
    const ids = before.map((manifest) => manifest.id).sort();

    // The same directory and bucket, now with a catalog key.
    const keysA = { signing: keyA, accepted: [keyA] };
    const local = new LocalStorage(plainLocal.dir, logger, keysA);
    const offsite = bucket('offsite', { prefix, keys: keysA });
    const store = newStore(local, [local, offsite]);
    const unsignedList = await store.listManifests();
    expect(unsignedList.manifests).toEqual([]);
    expect(unsignedList.invalid.map((entry) => entry.reason)).toEqual([
      expect.stringContaining('no HMAC'),
      expect.stringContaining('no HMAC'),
    ]);

    expect((await store.signCatalog())?.signed.sort()).toEqual(ids);
    expect((await store.listManifests()).manifests.map((m) => m.id).sort()).toEqual(ids);
    expect((await offsite.listManifests()).manifests.map((m) => m.id).sort()).toEqual(ids);
    expect(await store.getManifest(before[0]?.id as string)).toEqual(before[0]);
    expect(await readdir(local.dir)).toContain('.catalog-key');

    // Later, an unsigned manifest appears (by hand, or from an older process): refused, and
    // the next start does not sign it.
    const late = await storedBackup(plain, randomBytes(4096));
    expect(await store.signCatalog()).toBeUndefined();
    expect((await store.listManifests()).manifests.map((m) => m.id)).not.toContain(late.id);
    await expect(store.getManifest(late.id)).rejects.toMatchObject({ code: 'MANIFEST_INVALID' });

    // A manifest changed behind pgkeep is never signed, not even by a later key; one signed
    // with a key still accepted is signed again with the new one.
    const [changed, kept] = before as [BackupManifest, BackupManifest];
    const file = path.join(local.dir, manifestFilename(changed.id));
    const edited = JSON.parse(await readFile(file, 'utf8'));
    edited.label = 'edited';
    await writeFile(file, JSON.stringify(edited));
    const keysB = { signing: keyB, accepted: [keyB, keyA] };
    const rotatedLocal = new LocalStorage(local.dir, logger, keysB);
    const rotated = newStore(rotatedLocal, [
      rotatedLocal,
      bucket('offsite', { prefix, keys: keysB }),
    ]);
    const result = await rotated.signCatalog();
    expect(result?.signed).toEqual([kept.id]);
    expect(result?.refused.map((entry) => entry.file).sort()).toEqual(
      [manifestFilename(changed.id), manifestFilename(late.id)].sort(),
    );
    const onlyB = new LocalStorage(local.dir, logger, { signing: keyB, accepted: [keyB] });
    expect((await onlyB.listManifests()).manifests.map((m) => m.id)).toEqual([kept.id]);
  });

  it('leaves a bucket manifest without a valid HMAC out of a catalog rebuild', async () => {
    const keys = { signing: keyA, accepted: [keyA] };
    const local = await localDir();
    const keyed = new LocalStorage(local.dir, logger, keys);
    const prefix = `t-${randomBytes(4).toString('hex')}/`;
    const offsite = bucket('offsite', { prefix, keys });
    const store = newStore(keyed, [keyed, offsite]);
    const good = await storedBackup(store, randomBytes(4096));
    const edited = await storedBackup(store, randomBytes(4096));
    const key = `${prefix}${manifestFilename(edited.id)}`;
    const json = JSON.parse((await objectBytes(key)).toString('utf8'));
    json.tables = ['public.victim'];
    await raw.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: JSON.stringify(json) }));
    for (const manifest of [good, edited]) {
      await rm(path.join(local.dir, manifestFilename(manifest.id)));
    }

    expect((await store.rebuildCatalog()).added).toEqual([good.id]);
    expect(await store.getManifest(edited.id)).toBeUndefined();
  });
});
