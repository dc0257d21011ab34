import { truncate } from 'node:fs/promises';
import path from 'node:path';
import { type BackupManifest, metricsHashKey } from '@pgkeep/core';
import { enqueue } from '@pgkeep/queue';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { adminHeaders, postJob, startApi, type TestApi, token, waitForJob } from './support/api.js';
import { seedPanelSchema } from './support/panel-schema.js';
import { createTestEnv, dropDatabase, type TestEnv } from './support/test-env.js';
import { startWorker, type WorkerProcess } from './support/worker-process.js';

/**
 * GET /metrics as Prometheus scrapes it: the outcomes of jobs that ran in a worker process
 * (not in the API), backup histograms, queue depth, the catalog and the workers, in the text
 * format, behind a token.
 */

const METRICS_TOKEN = 'metrics-token-for-prometheus-0123456789abcdef';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Exposition {
  samples: Sample[];
  types: Map<string, string>;
  helps: Map<string, string>;
}

const sampleLine =
  /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*)\})? (-?(?:[0-9]+(?:\.[0-9]*)?(?:e[+-]?[0-9]+)?|\+Inf|-Inf|NaN))$/;
const labelPair = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"/g;

/**
 * The text format, strictly: every line is a HELP, a TYPE or a sample; every sample belongs to
 * a family whose HELP and TYPE came before it; a histogram's buckets ascend to +Inf, which
 * equals its count.
 */
function parseExposition(text: string): Exposition {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const helps = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const help = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    const type =
      /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (help?.[1] && help[2]) {
      helps.set(help[1], help[2]);
      continue;
    }
    if (type?.[1] && type[2]) {
      expect(helps.has(type[1]), `TYPE before HELP for ${type[1]}`).toBe(true);
      types.set(type[1], type[2]);
      continue;
    }
    const sample = sampleLine.exec(line);
    expect(sample, `not a Prometheus line: ${line}`).not.toBeNull();
    if (!sample?.[1] || sample[3] === undefined) continue;
    const name = sample[1];
    const family = types.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '');
    expect(types.has(family), `sample ${name} has no TYPE line before it`).toBe(true);
    if (family !== name) expect(types.get(family)).toBe('histogram');
    const labels: Record<string, string> = {};
    for (const [, key, value] of (sample[2] ?? '').matchAll(labelPair)) {
      if (key !== undefined && value !== undefined) labels[key] = value;
    }
    samples.push({ name, labels, value: Number(sample[3]) });
  }
  for (const [family, type] of types) {
    if (type !== 'histogram') continue;
    const buckets = samples.filter((sample) => sample.name === `${family}_bucket`);
    const series = new Map<string, Sample[]>();
    for (const bucket of buckets) {
      const { le: _le, ...rest } = bucket.labels;
      const key = JSON.stringify(rest);
      series.set(key, [...(series.get(key) ?? []), bucket]);
    }
    for (const [key, list] of series) {
      const bounds = list.map((bucket) => Number(bucket.labels.le));
      expect(bounds, `${family} ${key} buckets ascend`).toEqual([...bounds].sort((a, b) => a - b));
      expect(list.at(-1)?.labels.le).toBe('+Inf');
      const counts = list.map((bucket) => bucket.value);
      expect(counts).toEqual([...counts].sort((a, b) => a - b));
      const count = samples.find(
        (sample) => sample.name === `${family}_count` && JSON.stringify(sample.labels) === key,
      );
      expect(count?.value).toBe(list.at(-1)?.value);
    }
  }
  return { samples, types, helps };
}

function sampleValue(exposition: Exposition, name: string, labels: Record<string, string> = {}) {
  const found = exposition.samples.filter(
    (sample) =>
      sample.name === name &&
      Object.entries(labels).every(([key, value]) => sample.labels[key] === value),
  );
  expect(found.length, `${name} ${JSON.stringify(labels)}`).toBe(1);
  return found[0]?.value;
}

let env: TestEnv;
let api: TestApi;
let worker: WorkerProcess;
const copy = () => `${env.name}_copy`;

async function scrape(headers: Record<string, string>, target: TestApi = api) {
  return target.app.inject({ method: 'GET', url: '/metrics', headers });
}

beforeAll(async () => {
  env = await createTestEnv('metrics', { METRICS_TOKEN, BACKUP_ATTEMPTS: '1' });
  await seedPanelSchema(env.databaseUrl, 200);
  [api, worker] = await Promise.all([startApi(env.env), startWorker(env.env)]);
});

afterAll(async () => {
  await worker?.stop();
  await api?.close();
  if (env) await dropDatabase(env.serverUrl, copy());
  await env?.cleanup();
});

describe('GET /metrics', () => {
  it('counts the outcomes of jobs run by the worker, with histograms, queues and the catalog', async () => {
    const backup = await waitForJob(api, await postJob(api, '/api/backup', { label: 'metrics' }));
    expect(backup.state, JSON.stringify(backup.error)).toBe('completed');
    const manifest = backup.result as { id: string; size: number; completedAt: string };

    // A table that is not there: the API would refuse it, so it is queued directly.
    const missing = await enqueue(api.services.queues, api.config, 'backup', {
      tables: ['NoSuchTable'],
      format: 'custom',
      compression: 'zstd',
      label: null,
      type: 'manual',
      requestedBy: 'metrics-test',
      requestedAt: new Date().toISOString(),
    });
    const failed = await waitForJob(api, missing);
    expect(failed.state).toBe('failed');

    const restore = await waitForJob(
      api,
      await postJob(api, `/api/backup/${manifest.id}/restore`, {
        target: copy(),
        confirm: copy(),
      }),
    );
    expect(restore.state, JSON.stringify(restore.error)).toBe('completed');
    const verify = await waitForJob(
      api,
      await postJob(api, `/api/backup/${manifest.id}/verify`, {}),
    );
    expect(verify).toMatchObject({ state: 'completed', result: { ok: true } });

    // The worker counts a job once its state is written, so the last count may land a moment
    // after the job reads as finished.
    const metrics = await vi.waitFor(
      async () => {
        const response = await scrape({ authorization: `Bearer ${METRICS_TOKEN}` });
        expect(response.statusCode, response.body).toBe(200);
        const parsed = parseExposition(response.body);
        expect(
          sampleValue(parsed, 'pgkeep_jobs_total', { job: 'verify', outcome: 'completed' }),
        ).toBe(1);
        return { response, parsed };
      },
      { timeout: 10_000, interval: 100 },
    );
    const { parsed } = metrics;
    expect(metrics.response.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect([...parsed.types.keys()].every((name) => name.startsWith('pgkeep_'))).toBe(true);

    const jobs = (job: string, outcome: string) =>
      sampleValue(parsed, 'pgkeep_jobs_total', { job, outcome });
    expect(parsed.types.get('pgkeep_jobs_total')).toBe('counter');
    expect(jobs('backup', 'completed')).toBe(1);
    expect(jobs('backup', 'failed')).toBe(1);
    expect(jobs('backup', 'cancelled')).toBe(0);
    expect(jobs('restore', 'completed')).toBe(1);
    expect(jobs('restore', 'failed')).toBe(0);
    expect(jobs('verify', 'completed')).toBe(1);
    expect(jobs('verify', 'failed')).toBe(0);
    expect(jobs('delete', 'completed')).toBe(0);
    expect(jobs('cleanup', 'completed')).toBe(0);

    expect(parsed.types.get('pgkeep_backup_duration_seconds')).toBe('histogram');
    expect(sampleValue(parsed, 'pgkeep_backup_duration_seconds_count')).toBe(1);
    expect(sampleValue(parsed, 'pgkeep_backup_duration_seconds_bucket', { le: '+Inf' })).toBe(1);
    expect(sampleValue(parsed, 'pgkeep_backup_duration_seconds_sum')).toBeGreaterThan(0);
    expect(parsed.types.get('pgkeep_backup_size_bytes')).toBe('histogram');
    expect(sampleValue(parsed, 'pgkeep_backup_size_bytes_count')).toBe(1);
    expect(sampleValue(parsed, 'pgkeep_backup_size_bytes_sum')).toBe(manifest.size);
    expect(sampleValue(parsed, 'pgkeep_lock_wait_seconds_count', { job: 'restore' })).toBe(1);
    expect(sampleValue(parsed, 'pgkeep_lock_wait_seconds_count', { job: 'delete' })).toBe(0);

    // Kept in Redis: the two backups and the verify on one queue, the restore on the other.
    expect(parsed.types.get('pgkeep_queue_jobs')).toBe('gauge');
    const depth = (queue: string, state: string) =>
      sampleValue(parsed, 'pgkeep_queue_jobs', { queue, state });
    expect(depth('backups', 'completed')).toBe(2);
    expect(depth('backups', 'failed')).toBe(1);
    expect(depth('backups', 'waiting')).toBe(0);
    expect(depth('backups', 'active')).toBe(0);
    expect(depth('maintenance', 'completed')).toBe(1);

    expect(sampleValue(parsed, 'pgkeep_backups')).toBe(1);
    expect(sampleValue(parsed, 'pgkeep_backups_size_bytes')).toBe(manifest.size);
    expect(sampleValue(parsed, 'pgkeep_last_successful_backup_timestamp_seconds')).toBeCloseTo(
      Date.parse(manifest.completedAt) / 1000,
      3,
    );
    const age = sampleValue(parsed, 'pgkeep_newest_backup_age_seconds') ?? -1;
    expect(age).toBeGreaterThanOrEqual(0);
    expect(age).toBeLessThan(120);
    expect(sampleValue(parsed, 'pgkeep_workers_alive')).toBe(1);
    for (const source of ['jobs', 'catalog', 'queues', 'workers']) {
      expect(sampleValue(parsed, 'pgkeep_metrics_source_up', { source })).toBe(1);
    }
    // No notifier has counted anything in this environment.
    expect(parsed.types.has('pgkeep_notifications_total')).toBe(false);
  });

  it('counts a verify that finds the backup bad as a failed verify', async () => {
    const before = parseExposition((await scrape(adminHeaders())).body);
    const verifies = (parsed: typeof before, outcome: string) =>
      sampleValue(parsed, 'pgkeep_jobs_total', { job: 'verify', outcome }) ?? 0;
    const made = await waitForJob(api, await postJob(api, '/api/backup', {}));
    expect(made.state).toBe('completed');
    const manifest = made.result as unknown as BackupManifest;
    const file = path.join(env.backupDir, manifest.filename);
    await truncate(file, Math.floor(manifest.size / 2));
    const verify = await waitForJob(
      api,
      await postJob(api, `/api/backup/${manifest.id}/verify`, {}),
    );
    expect(verify.state).toBe('failed');
    expect(verify.error?.code).toBe('VERIFY_FAILED');

    const after = await vi.waitFor(
      async () => {
        const parsed = parseExposition((await scrape(adminHeaders())).body);
        expect(verifies(parsed, 'failed')).toBe(verifies(before, 'failed') + 1);
        return parsed;
      },
      { timeout: 10_000, interval: 100 },
    );
    expect(verifies(after, 'completed')).toBe(verifies(before, 'completed'));
  });

  it('shows the notifier’s counters from the shared hash by channel and outcome', async () => {
    const redis = new Redis(env.redisUrl);
    try {
      await redis.hincrby(metricsHashKey(`{${env.name}}`), 'notifications_sent_total:webhook', 2);
      await redis.hincrby(metricsHashKey(`{${env.name}}`), 'notifications_failed_total:webhook', 1);
    } finally {
      redis.disconnect();
    }
    const response = await scrape(adminHeaders());
    expect(response.statusCode, response.body).toBe(200);
    const parsed = parseExposition(response.body);
    expect(parsed.types.get('pgkeep_notifications_total')).toBe('counter');
    const sent = { channel: 'webhook', outcome: 'sent' };
    expect(sampleValue(parsed, 'pgkeep_notifications_total', sent)).toBe(2);
    expect(sampleValue(parsed, 'pgkeep_notifications_total', { ...sent, outcome: 'failed' })).toBe(
      1,
    );
  });

  it('needs METRICS_TOKEN or an admin token: 401 without or with a wrong one, 403 for a non-admin', async () => {
    const none = await scrape({});
    expect(none.statusCode).toBe(401);
    expect(none.json()).toMatchObject({ success: false, error: { code: 'UNAUTHORIZED' } });
    expect(none.body).not.toContain('pgkeep_');
    const wrong = await scrape({ authorization: `Bearer ${METRICS_TOKEN.replace(/.$/, 'x')}` });
    expect(wrong.statusCode).toBe(401);
    const notAdmin = await scrape({
      authorization: `Bearer ${token({ sub: 'viewer@example.com', role: 'USER' })}`,
    });
    expect(notAdmin.statusCode).toBe(403);
    expect(notAdmin.json()).toMatchObject({ error: { code: 'FORBIDDEN' } });
    expect((await scrape(adminHeaders())).statusCode).toBe(200);
    expect((await scrape({ authorization: `Bearer ${METRICS_TOKEN}` })).statusCode).toBe(200);
  });

  it('is open to anyone with METRICS_PUBLIC=true', async () => {
    const open = await startApi({ ...env.env, METRICS_PUBLIC: 'true' });
    try {
      const response = await scrape({}, open);
      expect(response.statusCode, response.body).toBe(200);
      expect(parseExposition(response.body).types.get('pgkeep_jobs_total')).toBe('counter');
    } finally {
      await open.close();
    }
  });
});
