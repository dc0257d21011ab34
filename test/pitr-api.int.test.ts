import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  type BaseBackupManifest,
  baseBackupManifestFilename,
  baseBackupManifestSchema,
  type WalEntry,
  walEntrySchema,
} from '@pgkeep/core';
import { publishPitrStatus } from '@pgkeep/queue';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminHeaders, getJob, json, startConnectedApi, type TestApi } from './support/api.js';
import { createTestEnv, type TestEnv } from './support/test-env.js';

/**
 * The API's side of point-in-time recovery, with no worker running: a targets file with one
 * server that has `pitr` (target `archived`) and one that has not (target `plain`), both the
 * shared PostgreSQL. The archive's catalog is written by hand, as a worker would leave it, to
 * show what the API reads from it; the window's own rules are unit-tested in the engine.
 */

let env: TestEnv;
let api: TestApi;
let dir: string;
let targetsFile: string;

const SEGMENT_SIZE = 16 * 1024 * 1024;
const segment = (n: number) => `0000000100000000${n.toString(16).toUpperCase().padStart(8, '0')}`;
const hex64 = (digit: string) => digit.repeat(64);

function targetsYaml(options: { walsrvPitr: boolean; plainPitr: boolean }): string {
  const port = new URL(env.serverUrl).port || '5432';
  const pitr = (on: boolean, extra = '') =>
    on ? `\n    pitr: { baseBackupSchedule: "off", cleanupSchedule: "off"${extra} }` : '';
  return `
servers:
  walsrv:
    url: postgres://postgres@127.0.0.1:${port}/postgres${pitr(options.walsrvPitr)}
  plainsrv:
    url: postgres://postgres@localhost:${port}/postgres${pitr(options.plainPitr, ', checkpoint: fast')}
targets:
  archived:
    server: walsrv
    database: ${env.name}
    schedules: { backup: "off", cleanup: "off", verify: "off" }
  plain:
    server: plainsrv
    database: ${env.name}
    schedules: { backup: "off", cleanup: "off", verify: "off" }
`;
}

beforeAll(async () => {
  env = await createTestEnv('pitrapi');
  dir = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-pitr-api-'));
  targetsFile = path.join(dir, 'targets.yaml');
  await writeFile(targetsFile, targetsYaml({ walsrvPitr: true, plainPitr: false }));
  api = await startConnectedApi({ ...env.env, TARGETS_FILE: targetsFile });
});

afterAll(async () => {
  await api?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
  await env?.cleanup();
});

const get = (url: string, headers: Record<string, string> = adminHeaders()) =>
  api.app.inject({ method: 'GET', url, headers });
const post = (url: string, payload?: object, headers: Record<string, string> = adminHeaders()) =>
  api.app.inject({
    method: 'POST',
    url,
    headers,
    ...(payload === undefined ? {} : { payload }),
  });

interface PitrAnswer {
  server: string;
  status: string;
  reasons: string[];
  timeline: number | null;
  from: string | null;
  to: string | null;
  gaps: { afterSegment: string; beforeSegment: string; from: string | null; to: string | null }[];
  lagSeconds: number | null;
  baseBackups: number;
  segments: number;
  lastSegment: string | null;
  receiver: { state: string } | null;
  settings: {
    baseBackup: { checkpoint: string; schedule: { enabled: boolean } };
    retention: unknown;
  };
  schedules: { name: string; enabled: boolean }[];
}

async function pitrOf(target: string): Promise<PitrAnswer> {
  const response = await get(`/api/targets/${target}/pitr`);
  expect(response.statusCode, response.body).toBe(200);
  return json<{ data: PitrAnswer }>(response).data;
}

/** The samples of /metrics whose family starts with `pgkeep_pitr_`, as `name{labels}` → value. */
async function pitrSamples(): Promise<Map<string, number>> {
  const response = await get('/metrics');
  expect(response.statusCode, response.body).toBe(200);
  const samples = new Map<string, number>();
  for (const line of response.body.split('\n')) {
    const match = /^(pgkeep_pitr_[a-z_]+\{[^}]*\}|pgkeep_metrics_source_up\{[^}]*\}) (\S+)$/.exec(
      line,
    );
    if (match?.[1] && match[2]) samples.set(match[1], Number(match[2]));
  }
  // Every family of its own is described, as the others are.
  for (const family of ['window_start_seconds', 'receiver_up', 'available', 'base_backups']) {
    expect(response.body).toContain(`# HELP pgkeep_pitr_${family} `);
    expect(response.body).toContain(`# TYPE pgkeep_pitr_${family} gauge`);
  }
  return samples;
}

describe('GET /api/targets/:target/pitr', () => {
  it('answers for a server with pitr and no worker: a warning, no base backup, nothing archived', async () => {
    const pitr = await pitrOf('archived');
    expect(pitr).toMatchObject({
      server: 'walsrv',
      status: 'warning',
      from: null,
      to: null,
      gaps: [],
      lagSeconds: null,
      baseBackups: 0,
      segments: 0,
      lastSegment: null,
      receiver: null,
    });
    expect(pitr.reasons.join('\n')).toMatch(/no worker runs the WAL receiver/);
    expect(pitr.reasons.join('\n')).toMatch(/no base backup yet/);
    // The server's settings as the targets file resolved them, and its schedules (both off).
    expect(pitr.settings).toMatchObject({
      baseBackup: { checkpoint: 'spread', schedule: { enabled: false } },
      retention: { kind: 'keep-last', keepLast: 2 },
      lagWarningSeconds: 600,
      switchWalSeconds: 60,
      destinations: ['local'],
      encryption: false,
    });
    expect(pitr.schedules.map(({ name, enabled }) => ({ name, enabled }))).toEqual([
      { name: 'basebackup', enabled: false },
      { name: 'cleanup', enabled: false },
    ]);
    const list = await get('/api/targets/archived/pitr/basebackups');
    expect(list.statusCode, list.body).toBe(200);
    expect(json<{ data: { baseBackups: unknown[] }; count: number }>(list)).toMatchObject({
      data: { baseBackups: [] },
      count: 0,
    });
  });

  it('is 404 PITR_NOT_ENABLED for a server without pitr, saying what to add; 404 for no target', async () => {
    for (const request of [
      () => get('/api/targets/plain/pitr'),
      () => get('/api/targets/plain/pitr/basebackups'),
      () => post('/api/targets/plain/pitr/basebackups', {}),
      () => post('/api/targets/plain/pitr/clean', {}),
    ]) {
      const response = await request();
      expect(response.statusCode, response.body).toBe(404);
      expect(json(response).error.code).toBe('PITR_NOT_ENABLED');
      expect(json(response).error.message).toMatch(/add `pitr` to servers\.plainsrv/);
    }
    const missing = await get('/api/targets/nosuch/pitr');
    expect(missing.statusCode).toBe(404);
    expect(json(missing).error.code).toBe('TARGET_NOT_FOUND');
  });

  it('is for admins only: 401 without a token', async () => {
    for (const response of [
      await get('/api/targets/archived/pitr', {}),
      await get('/api/targets/archived/pitr/basebackups', {}),
      await post('/api/targets/archived/pitr/basebackups', {}, {}),
      await post('/api/targets/archived/pitr/clean', {}, {}),
    ]) {
      expect(response.statusCode, response.body).toBe(401);
      expect(json(response).error.code).toBe('UNAUTHORIZED');
    }
  });
});

describe('POST /api/targets/:target/pitr/basebackups and /clean', () => {
  it('queues a base backup with the server’s checkpoint by default, and one as asked', async () => {
    const first = await post('/api/targets/archived/pitr/basebackups');
    expect(first.statusCode, first.body).toBe(202);
    const firstId = json<{ data: { jobId: string } }>(first).data.jobId;
    expect(firstId).toMatch(/^basebackup-[0-9a-f-]{36}$/);
    // Polled like any job: queued (no worker runs), named, for its target, with who asked.
    expect(await getJob(api, firstId)).toMatchObject({
      jobId: firstId,
      name: 'basebackup',
      state: 'queued',
      target: 'archived',
      requestedBy: 'admin@example.com',
      result: null,
      error: null,
    });
    const queued = await api.services.queues.backups.getJob(firstId);
    expect(queued?.name).toBe('basebackup');
    expect(queued?.data).toMatchObject({
      server: 'walsrv',
      checkpoint: 'spread',
      verify: true,
      label: null,
      type: 'manual',
      targetName: 'archived',
      requestedBy: 'admin@example.com',
    });
    expect(Date.now() - Date.parse(queued?.data.requestedAt)).toBeLessThan(60_000);

    const second = await post('/api/targets/archived/pitr/basebackups', {
      checkpoint: 'fast',
      label: 'before the migration',
      verify: false,
    });
    expect(second.statusCode, second.body).toBe(202);
    const secondId = json<{ data: { jobId: string } }>(second).data.jobId;
    expect((await api.services.queues.backups.getJob(secondId))?.data).toMatchObject({
      checkpoint: 'fast',
      label: 'before the migration',
      verify: false,
    });
  });

  it('queues the archive’s clean-up with the server’s retention', async () => {
    const response = await post('/api/targets/archived/pitr/clean', { dryRun: true });
    expect(response.statusCode, response.body).toBe(202);
    const jobId = json<{ data: { jobId: string } }>(response).data.jobId;
    expect(jobId).toMatch(/^pitr-cleanup-/);
    expect(await getJob(api, jobId)).toMatchObject({
      name: 'pitr-cleanup',
      state: 'queued',
      target: 'archived',
    });
    expect((await api.services.queues.maintenance.getJob(jobId))?.data).toMatchObject({
      server: 'walsrv',
      retention: { kind: 'keep-last', keepLast: 2 },
      timeZone: expect.any(String),
      dryRun: true,
      targetName: 'archived',
    });
    // No body: not a dry run.
    const plain = await post('/api/targets/archived/pitr/clean');
    expect(plain.statusCode, plain.body).toBe(202);
    const plainId = json<{ data: { jobId: string } }>(plain).data.jobId;
    expect((await api.services.queues.maintenance.getJob(plainId))?.data.dryRun).toBe(false);
  });

  it('refuses a bad body with 400 VALIDATION_ERROR, and queues nothing', async () => {
    const before = await api.services.queues.backups.getJobCounts('waiting');
    for (const [url, body] of [
      ['/api/targets/archived/pitr/basebackups', { checkpoint: 'slow' }],
      ['/api/targets/archived/pitr/basebackups', { colour: 'blue' }],
      ['/api/targets/archived/pitr/basebackups', { verify: 'yes' }],
      ['/api/targets/archived/pitr/basebackups', { label: '' }],
      ['/api/targets/archived/pitr/clean', { dryRun: 'true' }],
      ['/api/targets/archived/pitr/clean', { keepLast: 3 }],
    ] as const) {
      const response = await post(url, body);
      expect(response.statusCode, `${url} ${JSON.stringify(body)}`).toBe(400);
      expect(json(response).error.code).toBe('VALIDATION_ERROR');
    }
    expect(await api.services.queues.backups.getJobCounts('waiting')).toEqual(before);
  });
});

describe('health detail and metrics', () => {
  it('lists each server with pitr in the health detail; a warning there warns overall', async () => {
    const response = await get('/api/backup/health/detail');
    expect(response.statusCode, response.body).toBe(200);
    const detail = json<{
      data: {
        status: string;
        reasons: { code: string; severity: string; message: string }[];
        pitr: Record<string, unknown>[];
      };
    }>(response).data;
    expect(detail.pitr).toEqual([
      {
        server: 'walsrv',
        status: 'warning',
        reasons: expect.arrayContaining([expect.stringMatching(/no worker runs/)]),
        from: null,
        to: null,
        lagSeconds: null,
        gaps: 0,
      },
    ]);
    expect(detail.reasons).toContainEqual({
      code: 'PITR_UNHEALTHY',
      severity: 'warning',
      message: expect.stringMatching(/server walsrv is warning: .*no worker runs/),
    });
    expect(detail.status).not.toBe('ok');
  });

  it('has the pitr gauges of each server with pitr, none for the others', async () => {
    const samples = await pitrSamples();
    const of = (name: string) => samples.get(`pgkeep_pitr_${name}{server="walsrv"}`);
    expect(of('base_backups')).toBe(0);
    expect(of('archived_segments')).toBe(0);
    expect(of('gaps')).toBe(0);
    expect(of('receiver_up')).toBe(0);
    expect(of('available')).toBe(1);
    // No window yet: its start, end and lag are absent, not 0.
    expect(of('window_start_seconds')).toBeUndefined();
    expect(of('window_end_seconds')).toBeUndefined();
    expect(of('lag_seconds')).toBeUndefined();
    expect(of('slot_retained_bytes')).toBeUndefined();
    expect([...samples.keys()].filter((key) => key.includes('plainsrv'))).toEqual([]);
    expect(samples.get('pgkeep_metrics_source_up{source="pitr"}')).toBe(1);
  });
});

describe('the archive’s catalog, as the API reads it', () => {
  const now = Date.now();
  const at = (secondsAgo: number) => new Date(now - secondsAgo * 1000).toISOString();
  const catalog = () => path.join(env.backupDir, 'pitr', 'walsrv', 'catalog');

  function baseBackup(id: string, start: number, secondsAgo: number): BaseBackupManifest {
    return baseBackupManifestSchema.parse({
      manifestVersion: 1,
      kind: 'basebackup',
      id,
      server: 'walsrv',
      filename: `basebackup-${id}.tar.zst`,
      size: 4_096,
      sha256: hex64('a'),
      tarSize: 40_000_000,
      compression: 'zstd',
      encryption: null,
      copies: [
        {
          destination: 'local',
          location: `pitr/walsrv/basebackup-${id}.tar.zst`,
          size: 4_096,
          sha256: hex64('a'),
          writtenAt: at(secondsAgo),
        },
      ],
      serverVersion: '15.10',
      serverVersionNum: 150010,
      pgBasebackupVersion: '15.10',
      systemIdentifier: '1',
      timeline: 1,
      startLsn: `0/${start.toString(16).toUpperCase()}000028`,
      stopLsn: `0/${start.toString(16).toUpperCase()}000100`,
      startSegment: segment(start),
      stopSegment: segment(start),
      walSegmentSize: SEGMENT_SIZE,
      startTime: at(secondsAgo + 10),
      stopTime: at(secondsAgo),
      checkpoint: 'fast',
      verification: { tool: 'pg_verifybackup', ok: true, at: at(secondsAgo) },
      label: null,
      type: 'manual',
      requestedBy: 'admin@example.com',
      jobId: null,
      createdAt: at(secondsAgo + 10),
      completedAt: at(secondsAgo),
      durationMs: 10_000,
    });
  }

  const archived = (n: number, coveredSecondsAgo: number): WalEntry =>
    walEntrySchema.parse({
      op: 'archived',
      name: segment(n),
      filename: `${segment(n)}.zst`,
      walSize: SEGMENT_SIZE,
      walSha256: hex64('b'),
      size: 1_000,
      sha256: hex64('c'),
      encryption: null,
      destinations: ['local'],
      archivedAt: at(coveredSecondsAgo - 1),
      coveredUntil: at(coveredSecondsAgo),
    });

  // Segment 1 was archived and removed again (with the old base backup that needed it); 2 to 4
  // hold the newer base backup and what followed; 5 is missing; 6 and 7 came after the break.
  const older = baseBackup('2026-01-01T00-00-00-000Z-000000000001', 1, 900);
  const newer = baseBackup('2026-01-02T00-00-00-000Z-000000000002', 2, 300);
  const entries: WalEntry[] = [
    archived(1, 890),
    archived(2, 280),
    archived(3, 200),
    archived(4, 120),
    archived(6, 60),
    archived(7, 30),
    walEntrySchema.parse({ op: 'removed', name: segment(1), removedAt: at(100) }),
  ];

  beforeAll(async () => {
    await mkdir(catalog(), { recursive: true });
    await writeFile(
      path.join(catalog(), 'archive.json'),
      `${JSON.stringify({ systemIdentifier: '1', walSegmentSize: SEGMENT_SIZE })}\n`,
    );
    for (const manifest of [older, newer]) {
      await writeFile(
        path.join(catalog(), baseBackupManifestFilename(manifest.id)),
        `${JSON.stringify(manifest, null, 2)}\n`,
      );
    }
    await writeFile(
      path.join(catalog(), 'wal-catalog.jsonl'),
      entries.map((entry) => `${JSON.stringify(entry)}\n`).join(''),
    );
  });

  it('reports the window from the base backup’s end to the last contiguous segment, and the gap', async () => {
    const pitr = await pitrOf('archived');
    expect(pitr).toMatchObject({
      server: 'walsrv',
      timeline: 1,
      from: newer.stopTime,
      to: at(120),
      baseBackups: 2,
      segments: 5,
      lastSegment: segment(7),
      gaps: [{ afterSegment: segment(4), beforeSegment: segment(6), from: at(120), to: null }],
    });
    expect(pitr.lagSeconds).toBeGreaterThanOrEqual(120);
    expect(pitr.lagSeconds).toBeLessThan(600);
    expect(pitr.status).toBe('warning');
    expect(pitr.reasons).toContain('1 gap(s) in the archived WAL');

    const list = await get('/api/targets/archived/pitr/basebackups');
    expect(list.statusCode, list.body).toBe(200);
    const listed = json<{ data: { baseBackups: BaseBackupManifest[] }; count: number }>(list);
    // Newest first, each the manifest as stored.
    expect(listed.count).toBe(2);
    expect(listed.data.baseBackups).toEqual([newer, older]);
  });

  it('shows the window in the health detail and the metrics', async () => {
    const health = await get('/api/backup/health/detail');
    expect(json<{ data: { pitr: unknown[] } }>(health).data.pitr).toEqual([
      expect.objectContaining({ server: 'walsrv', from: newer.stopTime, to: at(120), gaps: 1 }),
    ]);
    const samples = await pitrSamples();
    const of = (name: string) => samples.get(`pgkeep_pitr_${name}{server="walsrv"}`);
    expect(of('window_start_seconds')).toBe(Date.parse(newer.stopTime) / 1000);
    expect(of('window_end_seconds')).toBe(Date.parse(at(120)) / 1000);
    expect(of('lag_seconds')).toBeGreaterThanOrEqual(120);
    expect(of('gaps')).toBe(1);
    expect(of('archived_segments')).toBe(5);
    expect(of('base_backups')).toBe(2);
  });

  it('queues a point-in-time restore only for a time a restore can reach, confirmed', async () => {
    // A third base backup after the break: the gap now has an end, inside the window.
    const bridging = baseBackup('2026-01-03T00-00-00-000Z-000000000003', 6, 55);
    const file = path.join(catalog(), baseBackupManifestFilename(bridging.id));
    await writeFile(file, `${JSON.stringify(bridging, null, 2)}\n`);
    const restore = (body: unknown, target = 'archived') =>
      api.app.inject({
        method: 'POST',
        url: `/api/targets/${target}/restore`,
        headers: adminHeaders(),
        payload: body as Record<string, unknown>,
      });
    try {
      const confirm = env.name;
      const refused = async (body: unknown, status: number, code: string, target?: string) => {
        const response = await restore(body, target);
        expect(response.statusCode, response.body).toBe(status);
        expect(json<{ error: { code: string } }>(response).error.code).toBe(code);
      };
      await refused({ pointInTime: at(90), confirm }, 422, 'PITR_TIME_IN_GAP');
      await refused(
        { pointInTime: new Date(now + 3_600_000).toISOString(), confirm },
        422,
        'PITR_TIME_IN_FUTURE',
      );
      await refused(
        { pointInTime: '2020-01-01T00:00:00Z', confirm },
        422,
        'PITR_TIME_OUTSIDE_WINDOW',
      );
      await refused({ pointInTime: at(200) }, 400, 'CONFIRMATION_REQUIRED');
      await refused({ pointInTime: 'yesterday', confirm }, 400, 'VALIDATION_ERROR');
      await refused({ pointInTime: at(200), confirm }, 404, 'PITR_NOT_ENABLED', 'plain');

      const accepted = await restore({ pointInTime: at(200), confirm });
      expect(accepted.statusCode, accepted.body).toBe(202);
      const jobId = json<{ data: { jobId: string } }>(accepted).data.jobId;
      expect(jobId).toMatch(/^pitr-restore-/);
      const job = await getJob(api, jobId);
      expect(job).toMatchObject({ jobId, state: 'queued' });
    } finally {
      await rm(file, { force: true });
    }
  });

  it('takes the receiver’s status from the worker that leads it', async () => {
    const { redis, config } = api.services;
    await publishPitrStatus(
      redis,
      config.REDIS_PREFIX,
      {
        server: 'walsrv',
        state: 'streaming',
        reasons: [],
        leader: { workerId: 'w1', hostname: 'host', pid: 1, since: at(60) },
        slot: {
          name: 'pgkeep_walsrv',
          active: true,
          retainedBytes: 123_456,
          walStatus: 'reserved',
        },
        lastArchived: { name: segment(7), at: at(30) },
        caughtUpAt: null,
        insertLsn: '0/8000000',
        lagBytes: 0,
        updatedAt: new Date().toISOString(),
      },
      60_000,
    );
    const pitr = await pitrOf('archived');
    expect(pitr.receiver).toMatchObject({ state: 'streaming', slot: { retainedBytes: 123_456 } });
    expect(pitr.reasons.join('\n')).not.toMatch(/no worker runs/);
    const samples = await pitrSamples();
    expect(samples.get('pgkeep_pitr_receiver_up{server="walsrv"}')).toBe(1);
    expect(samples.get('pgkeep_pitr_slot_retained_bytes{server="walsrv"}')).toBe(123_456);

    // A requirement missing on the server: unavailable, and 0 in the metrics.
    await publishPitrStatus(
      redis,
      config.REDIS_PREFIX,
      {
        server: 'walsrv',
        state: 'unavailable',
        reasons: ['wal_level is replica or logical: it is minimal'],
        leader: null,
        slot: null,
        lastArchived: null,
        caughtUpAt: null,
        insertLsn: null,
        lagBytes: null,
        updatedAt: new Date().toISOString(),
      },
      60_000,
    );
    expect(await pitrOf('archived')).toMatchObject({
      status: 'unavailable',
      reasons: ['wal_level is replica or logical: it is minimal'],
    });
    const after = await pitrSamples();
    expect(after.get('pgkeep_pitr_available{server="walsrv"}')).toBe(0);
    expect(after.get('pgkeep_pitr_receiver_up{server="walsrv"}')).toBe(0);
    const health = json<{ data: { pitr: { status: string }[]; reasons: { code: string }[] } }>(
      await get('/api/backup/health/detail'),
    ).data;
    expect(health.pitr[0]?.status).toBe('unavailable');
    expect(health.reasons.map((reason) => reason.code)).toContain('PITR_UNHEALTHY');
  });
});

describe('POST /api/targets/reload', () => {
  it('follows servers whose pitr changes', async () => {
    await writeFile(targetsFile, targetsYaml({ walsrvPitr: false, plainPitr: true }));
    const reload = await post('/api/targets/reload');
    expect(reload.statusCode, reload.body).toBe(202);

    const gone = await get('/api/targets/archived/pitr');
    expect(gone.statusCode).toBe(404);
    expect(json(gone).error.code).toBe('PITR_NOT_ENABLED');
    const now = await pitrOf('plain');
    expect(now).toMatchObject({
      server: 'plainsrv',
      baseBackups: 0,
      settings: { baseBackup: { checkpoint: 'fast' } },
    });
    const queued = await post('/api/targets/plain/pitr/basebackups');
    expect(queued.statusCode, queued.body).toBe(202);
    const jobId = json<{ data: { jobId: string } }>(queued).data.jobId;
    expect((await api.services.queues.backups.getJob(jobId))?.data).toMatchObject({
      server: 'plainsrv',
      checkpoint: 'fast',
      targetName: 'plain',
    });

    const samples = await pitrSamples();
    expect(samples.get('pgkeep_pitr_base_backups{server="plainsrv"}')).toBe(0);
    expect([...samples.keys()].filter((key) => key.includes('walsrv'))).toEqual([]);
    const health = json<{ data: { pitr: { server: string }[] } }>(
      await get('/api/backup/health/detail'),
    ).data;
    expect(health.pitr.map((entry) => entry.server)).toEqual(['plainsrv']);
  });
});
