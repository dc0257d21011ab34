import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import {
  type BaseBackupManifest,
  type Config,
  type JobName,
  type JobPayloadInput,
  loadConfig,
} from '@pgkeep/core';
import { closeQueues, createRedisConnection, openQueues, type PgkeepQueues } from '@pgkeep/queue';
import { KeyRing } from '@pgkeep/storage';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCluster, type TestCluster } from './support/pg-cluster.js';
import {
  archivedWal,
  baseBackupRequest,
  runJob as runPitrJob,
  scratchDirectories,
  serverClock,
  switchAndWaitArchived,
} from './support/pitr.js';
import {
  S3RVER_CREDENTIALS,
  type S3TestServer,
  s3TestClient,
  startS3Server,
} from './support/s3-server.js';
import { createTestEnv, type TestEnv } from './support/test-env.js';
import { startWorker, type WorkerProcess } from './support/worker-process.js';

/**
 * An encrypted WAL archive with an S3 copy: every file of it is encrypted in both places, a
 * point-in-time restore works from the bucket alone once the local copies are gone, and without
 * the key it fails before anything of the live server changes.
 */

const BUCKET = 'pitr-offsite';
const PREFIX = 'prod/';
const BUCKET_DIR = `${PREFIX}pitr/main/`;
const KEY = randomBytes(32).toString('base64');

let env: TestEnv;
let cluster: TestCluster;
let s3: S3TestServer;
let dir: string;
let scratch: string;
let targetsFile: string;
let processEnv: Record<string, string>;
let config: Config;
let redis: Redis;
let queues: PgkeepQueues;
let worker: WorkerProcess;
let keyId: string;
let base: BaseBackupManifest;
/** A time between the commits of bob and carol, by the server's clock. */
let between: string;

/**
 * The targets file; `encryption: true` without a key fails its check, so a worker started
 * without the key gets `encryption: false`.
 */
function targetsYaml(encryption: boolean): string {
  return `
servers:
  main:
    url: ${cluster.url}
    pitr:
      baseBackupSchedule: "off"
      cleanupSchedule: "off"
      checkpoint: fast
      switchWalSeconds: 0
      destinations: [local, offsite]
      encryption: ${encryption}
targets:
  shop:
    server: main
    database: shop
    schedules: { backup: "off", cleanup: "off", verify: "off" }
`;
}

const archiveDir = () => path.join(env.backupDir, 'pitr', 'main');

const archived = () => archivedWal(env.backupDir, 'main');

const archiveNow = () => switchAndWaitArchived(cluster, env.backupDir, 'main');

const runJob = <N extends JobName>(name: N, payload: JobPayloadInput<N>) =>
  runPitrJob(queues, config, name, payload);

const restoreRequest = (): JobPayloadInput<'pitr-restore'> => ({
  pointInTime: between,
  target: 'shop',
  targetName: 'shop',
  requestedBy: 'test',
  requestedAt: new Date().toISOString(),
});

async function bucketKeys(): Promise<string[]> {
  const client = s3TestClient(s3.endpoint);
  try {
    const listed = await client.send(
      new ListObjectsV2Command({ Bucket: BUCKET, Prefix: BUCKET_DIR }),
    );
    return (listed.Contents ?? []).map((object) => object.Key ?? '').sort();
  } finally {
    client.destroy();
  }
}

async function bucketObject(key: string): Promise<Buffer> {
  const client = s3TestClient(s3.endpoint);
  try {
    const object = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    return Buffer.from((await object.Body?.transformToByteArray()) ?? []);
  } finally {
    client.destroy();
  }
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** What `zstd -t` says of these bytes: true when it takes them for a zstd frame. */
function zstdAccepts(data: Buffer): boolean {
  return spawnSync('zstd', ['-t', '-q'], { input: data, maxBuffer: 64 << 20 }).status === 0;
}

/** Local archive files (the catalog and spool directories left out). */
async function localFiles(): Promise<string[]> {
  const entries = await readdir(archiveDir(), { withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => entry.name)
    .sort();
}

async function names(): Promise<string[]> {
  const rows = await cluster.query<{ name: string }>(
    'SELECT name FROM customers ORDER BY name',
    [],
    'shop',
  );
  return rows.map((row) => row.name);
}

async function databases(): Promise<string[]> {
  const rows = await cluster.query<{ name: string }>(
    'SELECT datname AS name FROM pg_database ORDER BY 1',
  );
  return rows.map((row) => row.name);
}

const serverNow = () => serverClock(cluster);

const scratchDirs = () => scratchDirectories(scratch);

beforeAll(async () => {
  [env, cluster, s3] = await Promise.all([
    createTestEnv('pitroffsite'),
    startTestCluster(),
    startS3Server([BUCKET]),
  ]);
  keyId = (await KeyRing.create({ key: Buffer.from(KEY, 'base64') })).writeKeyId as string;
  await cluster.query('CREATE DATABASE shop');
  await cluster.query(
    'CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL)',
    [],
    'shop',
  );
  dir = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-pitro-'));
  scratch = await mkdtemp(path.join('/tmp', 'pk-scr-'));
  // The temporary instance runs as another OS user (postgres) when the tests run as root.
  await chmod(scratch, 0o711);
  targetsFile = path.join(dir, 'targets.yaml');
  await writeFile(targetsFile, targetsYaml(true));
  processEnv = {
    ...env.env,
    TARGETS_FILE: targetsFile,
    BACKUP_DESTINATIONS: 'local,offsite',
    BACKUP_ENCRYPTION_KEY: KEY,
    S3_OFFSITE_BUCKET: BUCKET,
    S3_OFFSITE_ENDPOINT: s3.endpoint,
    S3_OFFSITE_PREFIX: PREFIX,
    S3_OFFSITE_FORCE_PATH_STYLE: 'true',
    S3_OFFSITE_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
    S3_OFFSITE_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    PITR_SCRATCH_DIR: scratch,
    PITR_STATUS_INTERVAL_MS: '300',
  };
  config = loadConfig({ ...processEnv, LOG_LEVEL: 'silent' }, { requireAuth: false });
  redis = createRedisConnection(env.redisUrl, 'api', 'pgkeep-pitr-offsite-test');
  queues = openQueues(redis, config.REDIS_PREFIX, { onError: () => {} });
  worker = await startWorker(processEnv);

  const outcome = await runJob('basebackup', baseBackupRequest('shop', false));
  expect(outcome.state, String(outcome.result)).toBe('completed');
  base = outcome.result as BaseBackupManifest;
  await cluster.query("INSERT INTO customers (name) VALUES ('alice')", [], 'shop');
  await cluster.query("INSERT INTO customers (name) VALUES ('bob')", [], 'shop');
  between = await serverNow();
  await cluster.query("INSERT INTO customers (name) VALUES ('carol')", [], 'shop');
  await cluster.query("DELETE FROM customers WHERE name = 'alice'", [], 'shop');
  await archiveNow();
});

afterAll(async () => {
  await worker?.stop();
  if (queues) await closeQueues(queues);
  redis?.disconnect();
  await cluster?.stop();
  await s3?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
  if (scratch) await rm(scratch, { recursive: true, force: true });
  await env?.cleanup();
});

describe('an encrypted WAL archive with an S3 copy', () => {
  it('encrypts every WAL file and the base backup, locally and in the bucket', async () => {
    const catalog = await archived();
    expect(catalog.size).toBeGreaterThan(0);
    const keys = await bucketKeys();
    for (const entry of catalog.values()) {
      expect(entry.filename).toBe(`${entry.name}.zst.enc`);
      expect(entry.encryption).toMatchObject({ algorithm: 'aes-256-gcm-stream-v1', keyId });
      expect(entry.destinations.sort()).toEqual(['local', 'offsite']);
      const local = await readFile(path.join(archiveDir(), entry.filename));
      const remote = await bucketObject(`${BUCKET_DIR}${entry.filename}`);
      for (const stored of [local, remote]) {
        expect(sha256(stored)).toBe(entry.sha256);
        expect(zstdAccepts(stored)).toBe(false);
      }
    }

    expect(base.filename).toBe(`basebackup-${base.id}.tar.zst.enc`);
    expect(base.encryption).toMatchObject({ algorithm: 'aes-256-gcm-stream-v1', keyId });
    expect(base.copies.map((copy) => copy.destination).sort()).toEqual(['local', 'offsite']);
    const local = await readFile(path.join(archiveDir(), base.filename));
    const remote = await bucketObject(`${BUCKET_DIR}${base.filename}`);
    for (const stored of [local, remote]) {
      expect(sha256(stored)).toBe(base.sha256);
      expect(zstdAccepts(stored)).toBe(false);
    }
    const remoteManifest = JSON.parse(
      (await bucketObject(`${BUCKET_DIR}basebackup-${base.id}.json`)).toString('utf8'),
    ) as BaseBackupManifest;
    expect(remoteManifest).toMatchObject({
      id: base.id,
      sha256: base.sha256,
      encryption: { keyId },
    });

    // Nothing but those: no plain copy of anything, in either place.
    const walFiles = [...catalog.values()].map((entry) => entry.filename);
    expect(keys).toEqual(
      [...walFiles, base.filename, `basebackup-${base.id}.json`]
        .map((file) => `${BUCKET_DIR}${file}`)
        .sort(),
    );
    expect(await localFiles()).toEqual(
      [...walFiles, base.filename, `basebackup-${base.id}.json`].sort(),
    );
  });

  it('restores to a point in time from the bucket alone once the local copies are gone', async () => {
    const local = (await localFiles()).filter((file) => file.endsWith('.zst.enc'));
    expect(local).toContain(base.filename);
    for (const file of local) await rm(path.join(archiveDir(), file));
    expect(await names()).toEqual(['bob', 'carol']);

    const outcome = await runJob('pitr-restore', restoreRequest());
    expect(outcome.state, String(outcome.result)).toBe('completed');
    const result = outcome.result as {
      walFilesFetched: number;
      phases: Record<string, number>;
      durationMs: number;
    };
    console.log(
      'PITR restore from the bucket, phases (ms):',
      JSON.stringify(result.phases),
      'total',
      result.durationMs,
    );
    expect(await names()).toEqual(['alice', 'bob']);
    expect(result.walFilesFetched).toBeGreaterThan(0);
    expect(await scratchDirs()).toEqual([]);
    // The bucket's copies were read: none of the deleted files came back locally.
    const after = await localFiles();
    expect(local.filter((file) => after.includes(file))).toEqual([]);
  });

  it('without the key a restore fails, the target unchanged, no scratch directory left', async () => {
    await cluster.query("INSERT INTO customers (name) VALUES ('dave')", [], 'shop');
    const before = await databases();
    await worker.stop();
    await writeFile(targetsFile, targetsYaml(false));
    const { BACKUP_ENCRYPTION_KEY: _key, ...withoutKey } = processEnv;
    worker = await startWorker(withoutKey);

    const outcome = await runJob('pitr-restore', restoreRequest());
    expect(outcome.state).toBe('failed');
    // The base backup's header names a key the worker does not have (encryption.ts).
    expect(String(outcome.result)).toMatch(
      new RegExp(`ENCRYPTION_KEY_MISSING.*key ${keyId}, which is not configured`),
    );
    expect(await names()).toEqual(['alice', 'bob', 'dave']);
    expect(await databases()).toEqual(before);
    expect(await scratchDirs()).toEqual([]);
  });
});
