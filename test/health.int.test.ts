import { execFileSync } from 'node:child_process';
import { watch } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { adminHeaders, json, startApi, type TestApi } from './support/api.js';
import { createTestEnv, type TestEnv } from './support/test-env.js';
import { startWorker, type WorkerProcess } from './support/worker-process.js';

/**
 * GET /api/backup/health as an operator's probe sees it: no token, 200 only when pg_dump (known
 * through a live worker), Redis, the database, storage and the workers are all fine, else 503
 * naming what fails, quickly, and without echoing a secret of the configuration, an error
 * text, a database name or a path (the details need a token: /api/backup/health/detail). A
 * storm of probes shares one check per HEALTH_CACHE_MS.
 */

interface Check {
  ok: boolean;
  [detail: string]: unknown;
}

interface Health {
  success: boolean;
  data: {
    healthy: boolean;
    failing: string[];
    checks: Record<'pgDump' | 'redis' | 'database' | 'storage' | 'workers', Check>;
  };
}

/** `pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)` → `15.20`, straight from the tool. */
function installedPgDumpVersion(): string {
  const output = execFileSync('pg_dump', ['--version'], { encoding: 'utf8' });
  const match = /\(PostgreSQL\)\s+(\d+(?:\.\d+)?)/.exec(output);
  if (!match?.[1]) throw new Error(`unexpected pg_dump --version output: ${output}`);
  return match[1];
}

async function health(api: TestApi) {
  const started = Date.now();
  const response = await api.app.inject({ method: 'GET', url: '/api/backup/health' });
  return {
    status: response.statusCode,
    body: response.json() as Health,
    raw: response.body,
    elapsedMs: Date.now() - started,
  };
}

/**
 * Waits until the API's Redis connection is open. A just-started API answers health before
 * it has connected and then wrongly reports Redis down (see the test "right after start");
 * the other tests wait here so that each shows only the failure it is about.
 */
async function redisConnected(api: TestApi): Promise<TestApi> {
  await vi.waitFor(() => expect(api.services.redis.status).toBe('ready'), {
    timeout: 5_000,
    interval: 20,
  });
  return api;
}

/** Resolves with the promise's value, or with 'no answer' once `ms` have passed. */
async function within<T>(ms: number, promise: Promise<T>): Promise<T | 'no answer'> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<'no answer'>((resolve) => {
        timer = setTimeout(() => resolve('no answer'), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** An API of its own over the shared test env, with some settings broken; always closed. */
async function withApi(
  overrides: Record<string, string>,
  options: { redisUp: boolean },
  work: (api: TestApi) => Promise<void>,
) {
  const api = await startApi({ ...env.env, ...overrides });
  try {
    if (options.redisUp) await redisConnected(api);
    await work(api);
  } finally {
    await api.close();
  }
}

// One worker serves this env's queue prefix for the whole file: the APIs with a broken setting
// below share the prefix, so only the broken dependency may fail their health check.
let env: TestEnv;
let api: TestApi;
let worker: WorkerProcess;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  env = await createTestEnv('health');
  [api, worker] = await Promise.all([startApi(env.env), startWorker(env.env)]);
});

afterAll(async () => {
  await worker?.stop();
  await api?.close();
  await env?.cleanup();
  for (const cleanup of cleanups.reverse()) await cleanup();
});

describe('health with everything up', () => {
  it('answers 200 without a token, with pg_dump’s version and every check ok', async () => {
    const { status, body } = await health(api);
    expect(status, JSON.stringify(body)).toBe(200);
    expect(body.success).toBe(true);
    expect(body.data.healthy).toBe(true);
    expect(body.data.failing).toEqual([]);
    expect(body.data.checks).toEqual({
      pgDump: { ok: true, version: installedPgDumpVersion() },
      redis: { ok: true },
      database: { ok: true },
      storage: { ok: true },
      workers: { ok: true },
    });
  });

  it('keeps the details (server version, live workers) for admins, in /detail', async () => {
    const response = await api.app.inject({
      method: 'GET',
      url: '/api/backup/health/detail',
      headers: adminHeaders(),
    });
    expect(response.statusCode, response.body).toBe(200);
    const { checks } = (response.json() as { data: { checks: Health['data']['checks'] } }).data;
    expect(checks.database.serverVersion).toEqual(expect.stringMatching(/^\d+(\.\d+)?/));
    expect(checks.workers.alive).toBeGreaterThanOrEqual(1);
  });

  it('right after start, does not report Redis down while its connection is still opening', async () => {
    // A probe (a load balancer, an orchestrator) may ask the moment the API starts. Redis is
    // up: the check should wait for the connection (within its timeout), not call Redis down.
    const fresh = await startApi(env.env);
    try {
      const { status, body, raw } = await health(fresh);
      expect(body.data.checks.redis, raw).toEqual({ ok: true });
      expect(body.data.failing).toEqual([]);
      expect(status).toBe(200);
    } finally {
      await fresh.close();
    }
  });
});

describe('health without a worker', () => {
  it('answers 503 naming pgDump and workers when no worker serves the prefix', async () => {
    const idle = await createTestEnv('health_idle');
    cleanups.push(() => idle.cleanup());
    const idleApi = await startApi(idle.env);
    try {
      await redisConnected(idleApi);
      const { status, body } = await health(idleApi);
      expect(status, JSON.stringify(body)).toBe(503);
      expect(body.success).toBe(false);
      expect(body.data.healthy).toBe(false);
      expect([...body.data.failing].sort()).toEqual(['pgDump', 'workers']);
      expect(body.data.checks.workers).toEqual({ ok: false });
      expect(body.data.checks.redis.ok).toBe(true);
      expect(body.data.checks.database.ok).toBe(true);
      expect(body.data.checks.storage.ok).toBe(true);
    } finally {
      await idleApi.close();
    }
  });

  it('turns 503 as soon as the only worker stops, not when its heartbeat expires', async () => {
    // A heartbeat every minute lives three minutes: only its removal at shutdown can make the
    // worker disappear from the health check within the few seconds polled below.
    const stopping = await createTestEnv('health_stop', {
      WORKER_HEARTBEAT_MS: '60000',
      // Answers are reused this long: short, so that the change shows within the poll below.
      HEALTH_CACHE_MS: '200',
    });
    cleanups.push(() => stopping.cleanup());
    const [stoppingApi, stoppingWorker] = await Promise.all([
      startApi(stopping.env),
      startWorker(stopping.env),
    ]);
    try {
      await redisConnected(stoppingApi);
      const before = await health(stoppingApi);
      expect(before.status, before.raw).toBe(200);
      expect(before.body.data.checks.workers.ok).toBe(true);

      await stoppingWorker.stop();
      expect((await stoppingWorker.exited).code).toBe(0);

      const after = await vi.waitFor(
        async () => {
          const answer = await health(stoppingApi);
          expect(answer.status, answer.raw).toBe(503);
          return answer;
        },
        { timeout: 5_000, interval: 100 },
      );
      expect([...after.body.data.failing].sort()).toEqual(['pgDump', 'workers']);
      expect(after.body.data.checks.workers.ok).toBe(false);
    } finally {
      await stoppingWorker.kill();
      await stoppingApi.close();
    }
  });
});

describe('health with a dependency down', () => {
  it('Redis unreachable: health and POST /api/backup answer 503 quickly, never hang', async () => {
    const down = { REDIS_URL: 'redis://127.0.0.1:1' };
    await withApi(down, { redisUp: false }, async (downApi) => {
      const probe = await health(downApi);
      expect(probe.status, probe.raw).toBe(503);
      expect(probe.elapsedMs).toBeLessThan(5_000);
      expect(probe.body.data.failing).toContain('redis');
      expect(probe.body.data.checks.redis.ok).toBe(false);
      expect(probe.body.data.checks.database.ok).toBe(true);
      expect(probe.body.data.checks.storage.ok).toBe(true);

      const started = Date.now();
      const response = await within(
        10_000,
        downApi.app.inject({
          method: 'POST',
          url: '/api/backup',
          headers: adminHeaders(),
          payload: {},
        }),
      );
      if (response === 'no answer') {
        expect.fail('POST /api/backup gave no answer within 10 s while Redis is unreachable');
      }
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(response.statusCode, response.body).toBe(503);
      expect(json(response)).toMatchObject({
        success: false,
        error: { code: 'QUEUE_UNAVAILABLE' },
      });
    });
  });

  it('database unreachable: 503 naming database; a table backup answers DATABASE_UNAVAILABLE', async () => {
    await withApi(
      { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/x' },
      { redisUp: true },
      async (downApi) => {
        const probe = await health(downApi);
        expect(probe.status, probe.raw).toBe(503);
        expect(probe.elapsedMs).toBeLessThan(5_000);
        expect(probe.body.data.failing).toContain('database');
        expect(probe.body.data.checks.database).toEqual({ ok: false });
        // The worker serving this prefix is alive, and Redis and storage are fine.
        expect(probe.body.data.checks.redis.ok).toBe(true);
        expect(probe.body.data.checks.storage.ok).toBe(true);
        expect(probe.body.data.checks.workers.ok).toBe(true);

        const started = Date.now();
        const response = await downApi.app.inject({
          method: 'POST',
          url: '/api/backup',
          headers: adminHeaders(),
          payload: { tables: ['User'] },
        });
        expect(Date.now() - started).toBeLessThan(10_000);
        expect(response.statusCode, response.body).toBe(503);
        expect(json(response)).toMatchObject({
          success: false,
          error: { code: 'DATABASE_UNAVAILABLE' },
        });
      },
    );
  });

  /** BACKUP_DIR below a regular file: no directory can ever be made there. */
  async function unwritableBackupDir(): Promise<string> {
    const scratch = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-health-file-'));
    cleanups.push(() => rm(scratch, { recursive: true, force: true }));
    const file = path.join(scratch, 'not-a-directory');
    await writeFile(file, 'a regular file');
    return path.join(file, 'sub');
  }

  it('backup directory not writable: 503 naming storage', async () => {
    await withApi({ BACKUP_DIR: await unwritableBackupDir() }, { redisUp: true }, async (api) => {
      const probe = await health(api);
      expect(probe.status, probe.raw).toBe(503);
      expect(probe.body.data.failing).toEqual(['storage']);
      expect(probe.body.data.checks.storage.ok).toBe(false);
    });
  });

  it('backup directory not writable: the public answer does not show the path', async () => {
    // The health answer needs no token, so the storage check leaves its directory out when it
    // passes; a failing check must not show it either, e.g. inside an fs error message.
    const dir = await unwritableBackupDir();
    await withApi({ BACKUP_DIR: dir }, { redisUp: true }, async (api) => {
      const probe = await health(api);
      expect(probe.status).toBe(503);
      expect(probe.raw).not.toContain(path.dirname(dir));
    });
  });

  it('never shows a password of the configuration', async () => {
    await withApi(
      {
        DATABASE_URL: 'postgres://postgres:s3cr3t-pw@127.0.0.1:1/x',
        REDIS_URL: 'redis://:r3d1s-pw@127.0.0.1:1',
      },
      { redisUp: false },
      async (downApi) => {
        const probe = await health(downApi);
        expect(probe.status).toBe(503);
        expect(probe.body.data.failing).toEqual(expect.arrayContaining(['database', 'redis']));
        expect(probe.raw).not.toContain('s3cr3t-pw');
        expect(probe.raw).not.toContain('r3d1s-pw');

        const response = await downApi.app.inject({
          method: 'POST',
          url: '/api/backup',
          headers: adminHeaders(),
          payload: { tables: ['User'] },
        });
        expect(response.statusCode).toBe(503);
        expect(response.body).not.toContain('s3cr3t-pw');
        expect(response.body).not.toContain('r3d1s-pw');
      },
    );
  });
});

describe('what the public answer leaves out', () => {
  it('a database refusing its role: 503 naming database, without the error, role, database or path', async () => {
    const url = new URL(env.databaseUrl);
    url.username = 'nosuchrole';
    await withApi({ DATABASE_URL: url.toString() }, { redisUp: true }, async (badRole) => {
      const probe = await health(badRole);
      expect(probe.status, probe.raw).toBe(503);
      expect(probe.body.success).toBe(false);
      expect(probe.body.data.failing).toEqual(['database']);
      expect(probe.body.data.checks.database).toEqual({ ok: false });
      for (const secret of ['nosuchrole', env.name, env.backupDir, 'does not exist']) {
        expect(probe.raw).not.toContain(secret);
      }
      // An admin sees why, in the detail.
      const detail = await badRole.app.inject({
        method: 'GET',
        url: '/api/backup/health/detail',
        headers: adminHeaders(),
      });
      expect(detail.body).toContain('nosuchrole');
    });
  });
});

describe('a storm of probes', () => {
  /**
   * Names of the storage check's probe files created in `dir` while `work` runs. inotify keeps
   * the order of events, so once the event of a file created afterwards has arrived, every
   * event of `work` has too.
   */
  async function probeFilesCreatedDuring(dir: string, work: () => Promise<void>) {
    const seen = new Set<string>();
    const watcher = watch(dir, (_event, name) => {
      if (name) seen.add(String(name));
    });
    try {
      await work();
      const marker = `marker-${Date.now()}`;
      await writeFile(path.join(dir, marker), '');
      await vi.waitFor(() => expect(seen.has(marker)).toBe(true), { timeout: 5_000, interval: 10 });
      await rm(path.join(dir, marker));
    } finally {
      watcher.close();
    }
    return [...seen].filter((name) => name.startsWith('.write-check-'));
  }

  it('50 probes within HEALTH_CACHE_MS, at once and one after another, write to storage once', async () => {
    await withApi({ HEALTH_CACHE_MS: '60000' }, { redisUp: true }, async (probed) => {
      const statuses: number[] = [];
      const written = await probeFilesCreatedDuring(env.backupDir, async () => {
        const together = await Promise.all(Array.from({ length: 25 }, () => health(probed)));
        statuses.push(...together.map((probe) => probe.status));
        for (let i = 0; i < 25; i += 1) statuses.push((await health(probed)).status);
      });
      expect(statuses).toEqual(Array(50).fill(200));
      expect(written).toHaveLength(1);
    });
  });

  it('an unhealthy answer is shared the same way and keeps its 503', async () => {
    await withApi(
      { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/x', HEALTH_CACHE_MS: '60000' },
      { redisUp: true },
      async (probed) => {
        const statuses: number[] = [];
        const written = await probeFilesCreatedDuring(env.backupDir, async () => {
          const together = await Promise.all(Array.from({ length: 50 }, () => health(probed)));
          statuses.push(...together.map((probe) => probe.status));
        });
        expect(statuses).toEqual(Array(50).fill(503));
        expect(written).toHaveLength(1);
      },
    );
  });

  it('checks again once HEALTH_CACHE_MS has passed', async () => {
    await withApi({ HEALTH_CACHE_MS: '200' }, { redisUp: true }, async (probed) => {
      const probeFiles = new Set<string>();
      const watcher = watch(env.backupDir, (_event, name) => {
        if (name?.startsWith('.write-check-')) probeFiles.add(name);
      });
      try {
        await health(probed);
        // Probes keep coming; past the cache's time one of them checks again.
        await vi.waitFor(
          async () => {
            await health(probed);
            expect(probeFiles.size).toBeGreaterThanOrEqual(2);
          },
          { timeout: 5_000, interval: 50 },
        );
      } finally {
        watcher.close();
      }
    });
  });
});
