import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import {
  type ArchivedWal,
  type BaseBackupManifest,
  type Config,
  type JobName,
  type JobPayloadInput,
  loadConfig,
} from '@pgkeep/core';
import { isSegmentName, parseSegmentName, recoverableWindow } from '@pgkeep/engine';
import {
  closeQueues,
  createRedisConnection,
  openQueues,
  type PgkeepQueues,
  readPitrStatus,
} from '@pgkeep/queue';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRole, startTestCluster, type TestCluster } from './support/pg-cluster.js';
import {
  archivedWal,
  baseBackupRequest,
  runJob as runPitrJob,
  switchAndWaitArchived,
  until,
} from './support/pitr.js';
import { childrenOf, isRunning } from './support/processes.js';
import {
  S3RVER_CREDENTIALS,
  type S3TestServer,
  s3TestClient,
  startS3Server,
} from './support/s3-server.js';
import { createTestEnv, type TestEnv } from './support/test-env.js';
import { startWorker, type WorkerProcess } from './support/worker-process.js';

/**
 * The WAL archive of a server of the tests' own (a dedicated cluster with replication allowed):
 * pg_receivewal through a slot, one leader among the workers, every finished segment in every
 * destination and the catalog, base backups checked by pg_verifybackup, and retention.
 */

const BUCKET = 'pitr-archive';
const SEGMENT = 16 * 1024 * 1024;

let env: TestEnv;
let cluster: TestCluster;
let s3: S3TestServer;
let dir: string;
let targetsFile: string;
let processEnv: Record<string, string>;
let config: Config;
let redis: Redis;
let queues: PgkeepQueues;
const workers: WorkerProcess[] = [];

function targetsYaml(options: { pitr: boolean }): string {
  const url = new URL(cluster.url);
  return `
servers:
  main:
    url: ${cluster.url}
${
  options.pitr
    ? `    pitr:
      baseBackupSchedule: "off"
      cleanupSchedule: "off"
      checkpoint: fast
      switchWalSeconds: 0
      destinations: [local, offsite]
      retention: { keepLast: 1 }
`
    : ''
}  norepl:
    url: postgres://plain@127.0.0.1:${url.port}/postgres
    pitr: { baseBackupSchedule: "off", cleanupSchedule: "off" }
targets:
  app:
    server: main
    database: app
    schedules: { backup: "off", cleanup: "off", verify: "off" }
  plain:
    server: norepl
    database: app
    schedules: { backup: "off", cleanup: "off", verify: "off" }
`;
}

const catalogDir = () => path.join(env.backupDir, 'pitr', 'main', 'catalog');
const archiveDir = () => path.join(env.backupDir, 'pitr', 'main');

const archived = () => archivedWal(env.backupDir, 'main');

async function baseBackups(): Promise<BaseBackupManifest[]> {
  const files = (await readdir(catalogDir())).filter((file) => file.startsWith('basebackup-'));
  return Promise.all(
    files.map(
      async (file) =>
        JSON.parse(await readFile(path.join(catalogDir(), file), 'utf8')) as BaseBackupManifest,
    ),
  );
}

/** Polls `check` until it returns a value (not undefined) or the time is up. */

/** Writes rows, ends the segment, and waits until the archive holds it; returns its name. */
async function switchAndArchive(rows = 200): Promise<string> {
  await cluster.query(
    'INSERT INTO events (body) SELECT md5(g::text) FROM generate_series(1, $1) g',
    [rows],
    'app',
  );
  return switchAndWaitArchived(cluster, env.backupDir, 'main');
}

/** Every segment from the first archived to the last, with none missing. */
function contiguous(names: string[]): boolean {
  const segnos = names
    .filter(isSegmentName)
    .map((name) => parseSegmentName(name, SEGMENT).segno)
    .sort((a, b) => (a < b ? -1 : 1));
  return segnos.every((segno, index) => index === 0 || segno === (segnos[index - 1] ?? 0n) + 1n);
}

const runJob = <N extends JobName>(name: N, payload: JobPayloadInput<N>) =>
  runPitrJob(queues, config, name, payload);

async function leaderOf(): Promise<WorkerProcess> {
  const status = await until('a leader', async () => {
    const current = await readPitrStatus(redis, config.REDIS_PREFIX, 'main');
    return current?.state === 'streaming' ? current : undefined;
  });
  const leader = workers.find((worker) => status.leader?.pid === worker.pid);
  if (!leader) throw new Error('the leader is none of the test workers');
  return leader;
}

const receiverPid = (worker: WorkerProcess) =>
  childrenOf(worker.pid).find((child) => child.command === 'pg_receivewal')?.pid;

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

beforeAll(async () => {
  [env, cluster, s3] = await Promise.all([
    createTestEnv('pitr'),
    startTestCluster(),
    startS3Server([BUCKET]),
  ]);
  await cluster.query('CREATE DATABASE app');
  await cluster.query(
    'CREATE TABLE events (id bigserial PRIMARY KEY, body text NOT NULL)',
    [],
    'app',
  );
  await createRole(cluster, 'plain', { replication: false });
  await cluster.query('GRANT SELECT ON ALL TABLES IN SCHEMA public TO plain', [], 'app');
  await cluster.query('GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO plain', [], 'app');
  dir = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-pitr-'));
  targetsFile = path.join(dir, 'targets.yaml');
  await writeFile(targetsFile, targetsYaml({ pitr: true }));
  processEnv = {
    ...env.env,
    TARGETS_FILE: targetsFile,
    BACKUP_DESTINATIONS: 'local,offsite',
    S3_OFFSITE_BUCKET: BUCKET,
    S3_OFFSITE_ENDPOINT: s3.endpoint,
    S3_OFFSITE_PREFIX: 'prod/',
    S3_OFFSITE_FORCE_PATH_STYLE: 'true',
    S3_OFFSITE_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
    S3_OFFSITE_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    PITR_STATUS_INTERVAL_MS: '300',
    PITR_RECHECK_MS: '2000',
  };
  config = loadConfig({ ...processEnv, LOG_LEVEL: 'silent' }, { requireAuth: false });
  redis = createRedisConnection(env.redisUrl, 'api', 'pgkeep-pitr-test');
  queues = openQueues(redis, config.REDIS_PREFIX, { onError: () => {} });
  workers.push(...(await Promise.all([startWorker(processEnv), startWorker(processEnv)])));
});

afterAll(async () => {
  await Promise.all(workers.map((worker) => worker.stop()));
  if (queues) await closeQueues(queues);
  redis?.disconnect();
  await cluster?.stop();
  await s3?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
  await env?.cleanup();
});

describe('WAL archive', () => {
  it('archives every finished segment in every destination, checksummed, never a partial one', async () => {
    const first = await switchAndArchive();
    const second = await switchAndArchive();
    const third = await switchAndArchive();
    const catalog = await archived();
    for (const name of [first, second, third]) {
      const entry = catalog.get(name) as ArchivedWal;
      expect(entry.destinations.sort()).toEqual(['local', 'offsite']);
      expect(entry.walSize).toBe(SEGMENT);
      // What is stored is what the catalog says, locally and in the bucket.
      const local = await readFile(path.join(archiveDir(), entry.filename));
      expect(sha256(local)).toBe(entry.sha256);
      const client = s3TestClient(s3.endpoint);
      const object = await client.send(
        new GetObjectCommand({ Bucket: BUCKET, Key: `prod/pitr/main/${entry.filename}` }),
      );
      const remote = Buffer.from((await object.Body?.transformToByteArray()) ?? []);
      client.destroy();
      expect(sha256(remote)).toBe(entry.sha256);
      // And it decompresses to the segment PostgreSQL wrote.
      const wal = execFileSync('zstd', ['-d', '-c', '-q'], { input: local, maxBuffer: 64 << 20 });
      expect(wal.length).toBe(SEGMENT);
      expect(sha256(wal)).toBe(entry.walSha256);
    }
    expect([...catalog.keys()].every((name) => /^[0-9A-F]{24}$|\.history$/.test(name))).toBe(true);
    expect(contiguous([...catalog.keys()])).toBe(true);
    // The spool keeps only the segment in progress.
    const spool = await readdir(path.join(archiveDir(), 'spool'));
    expect(spool.filter(isSegmentName)).toEqual([]);
  });

  it('takes a base backup that pg_verifybackup accepts, and the window opens at its end', async () => {
    const outcome = await runJob('basebackup', baseBackupRequest('app', true));
    expect(outcome.state, String(outcome.result)).toBe('completed');
    const manifest = outcome.result as BaseBackupManifest;
    expect(manifest.verification?.ok).toBe(true);
    expect(manifest.copies.map((copy) => copy.destination).sort()).toEqual(['local', 'offsite']);
    const [systemRow] = await cluster.query<{ id: string }>(
      'SELECT system_identifier::text AS id FROM pg_control_system()',
    );
    expect(manifest.systemIdentifier).toBe(systemRow?.id);
    await switchAndArchive();
    const window = recoverableWindow(
      'main',
      await baseBackups(),
      [...(await archived()).values()],
      SEGMENT,
    );
    expect(window.from).toBe(manifest.stopTime);
    expect(window.to).not.toBeNull();
    expect(Date.parse(window.to as string)).toBeGreaterThanOrEqual(Date.parse(manifest.stopTime));
    expect(window.gaps).toEqual([]);
  });

  it('a killed pg_receivewal leaves no partial segment archived and no gap', async () => {
    const leader = await leaderOf();
    await cluster.query(
      'INSERT INTO events (body) SELECT md5(g::text) FROM generate_series(1, 500) g',
      [],
      'app',
    );
    const pid = await until('pg_receivewal', async () => receiverPid(leader));
    process.kill(pid, 'SIGKILL');
    await until('pg_receivewal again', async () => {
      const next = receiverPid(leader);
      return next !== undefined && next !== pid ? next : undefined;
    });
    const name = await switchAndArchive();
    const catalog = await archived();
    expect(catalog.has(name)).toBe(true);
    expect(contiguous([...catalog.keys()])).toBe(true);
  });

  it('the leader SIGKILLed: another worker takes over within seconds, with no gap', async () => {
    const leader = await leaderOf();
    const standby = workers.find((worker) => worker !== leader) as WorkerProcess;
    const orphan = receiverPid(leader);
    const killedAt = Date.now();
    await leader.kill();
    await standby.waitForLine((line) => line.msg === 'pg_receivewal started', 30_000);
    const takeoverMs = Date.now() - killedAt;
    console.log(`WAL receiver takeover after SIGKILL of the leader: ${takeoverMs} ms`);
    expect(takeoverMs).toBeLessThan(15_000);
    // pg_receivewal died with its worker.
    if (orphan !== undefined) expect(await isRunning(orphan)).toBe(false);
    workers.splice(workers.indexOf(leader), 1);
    const name = await switchAndArchive();
    const catalog = await archived();
    expect(catalog.has(name)).toBe(true);
    expect(contiguous([...catalog.keys()])).toBe(true);
    workers.push(await startWorker(processEnv));
  });

  it('a server whose role lacks REPLICATION is reported unavailable with the reason; its backups still run', async () => {
    const status = await until('norepl status', async () => {
      const current = await readPitrStatus(redis, config.REDIS_PREFIX, 'norepl');
      return current?.state === 'unavailable' ? current : undefined;
    });
    expect(status.reasons.join(' ')).toMatch(/lacks REPLICATION/);
    const outcome = await runJob('backup', {
      tables: null,
      format: 'custom',
      compression: 'zstd',
      label: null,
      type: 'manual',
      targetName: 'plain',
      requestedBy: 'test',
      requestedAt: new Date().toISOString(),
    });
    expect(outcome.state, String(outcome.result)).toBe('completed');
  });

  it('retention keeps the newest base backup and exactly the WAL from its start on', async () => {
    await switchAndArchive();
    const second = await runJob('basebackup', baseBackupRequest('app', false));
    expect(second.state, String(second.result)).toBe('completed');
    const newest = second.result as BaseBackupManifest;
    await switchAndArchive();
    const before = await archived();
    const start = parseSegmentName(newest.startSegment, SEGMENT).segno;
    const older = [...before.values()].filter(
      (entry) => isSegmentName(entry.name) && parseSegmentName(entry.name, SEGMENT).segno < start,
    );
    expect(older.length).toBeGreaterThan(0);
    const payload = {
      server: 'main',
      retention: { kind: 'keep-last' as const, keepLast: 1 },
      timeZone: 'UTC',
      targetName: 'app',
      requestedBy: 'test',
      requestedAt: new Date().toISOString(),
    };
    const dry = await runJob('pitr-cleanup', { ...payload, dryRun: true });
    expect(dry.state, String(dry.result)).toBe('completed');
    expect(dry.result).toMatchObject({ dryRun: true, deletedSegments: older.length });
    expect((await archived()).size).toBe(before.size);

    const done = await runJob('pitr-cleanup', { ...payload, dryRun: false });
    expect(done.state, String(done.result)).toBe('completed');
    expect(done.result).toMatchObject({
      kept: [newest.id],
      keptFromSegment: newest.startSegment,
      deletedSegments: older.length,
    });
    const after = await archived();
    expect([...after.keys()].sort()).toEqual(
      [...before.keys()].filter((name) => !older.some((entry) => entry.name === name)).sort(),
    );
    for (const entry of older) {
      await expect(readFile(path.join(archiveDir(), entry.filename))).rejects.toThrow();
    }
    const client = s3TestClient(s3.endpoint);
    const listed = await client.send(
      new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'prod/pitr/main/' }),
    );
    client.destroy();
    const keys = (listed.Contents ?? []).map((object) => object.Key ?? '');
    for (const entry of older) expect(keys).not.toContain(`prod/pitr/main/${entry.filename}`);
    for (const entry of after.values()) expect(keys).toContain(`prod/pitr/main/${entry.filename}`);
    expect((await baseBackups()).map((manifest) => manifest.id)).toEqual([newest.id]);
    const window = recoverableWindow('main', await baseBackups(), [...after.values()], SEGMENT);
    expect(window.from).toBe(newest.stopTime);
    expect(window.gaps).toEqual([]);
  });

  it('turning PITR off drops the slot', async () => {
    const slot = async () =>
      (
        await cluster.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name = 'pgkeep_main'",
        )
      )[0]?.n;
    expect(await slot()).toBe(1);
    await writeFile(targetsFile, targetsYaml({ pitr: false }));
    for (const worker of workers) worker.child.kill('SIGHUP');
    await until('the slot dropped', async () => ((await slot()) === 0 ? true : undefined), 30_000);
  });
});
