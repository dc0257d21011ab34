import path from 'node:path';
import { queueNames } from '@pgkeep/core';
import autocannon from 'autocannon';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { type BenchContext, datasetTables, ensureArtifacts, sectionMeta } from '../lib/context.js';
import { freePort, REDIS_URL, ROOT, startNodeApp, stopChild } from '../lib/pgkeep.js';
import type { ApiRun, ApiSection } from '../lib/results.js';
import { sleep } from '../lib/util.js';
import { panelLoad } from './api-panel.js';

async function load(
  url: string,
  headers: Record<string, string>,
  connections: number,
  durationSec: number,
): Promise<ApiRun> {
  const result = await autocannon({ url, headers, connections, duration: durationSec });
  return {
    requestsPerSec: result['2xx'] / result.duration,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
  };
}

async function waitForHttp(url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await fetch(url);
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`${url} did not answer`);
      await sleep(50);
    }
  }
}

/**
 * An unfinished job for the whole section: the backups queue is paused, so the backup queued
 * through the API stays queued (BullMQ's wait list) while it is polled. An unfinished job takes
 * the same path through the API as a running one (one Redis script per poll, nothing kept);
 * a running job's answer only has a larger `progress`. `release` removes the job and resumes
 * the queue, so the sections after this one find the stack as it was.
 */
async function holdUnfinishedJob(
  stack: BenchContext['stack'],
  table: string,
): Promise<{ jobId: string; release: () => Promise<void>; more: () => Promise<string> }> {
  const connection = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  connection.on('error', () => {});
  // pgkeep's BullMQ prefix is `{QUEUE_PREFIX}` (a Redis Cluster hash tag; see REDIS_PREFIX).
  const backups = new Queue(queueNames.backups, { connection, prefix: `{${stack.prefix}}` });
  backups.on('error', () => {});
  await backups.pause();
  let jobId: string | undefined;
  const held: string[] = [];
  const more = async () => {
    const id = await stack.enqueue('/api/backup', { tables: [table], label: 'api bench (panel)' });
    held.push(id);
    return id;
  };
  const release = async () => {
    try {
      for (const id of [...(jobId ? [jobId] : []), ...held]) await backups.remove(id);
      await backups.resume();
    } finally {
      await backups.close();
      connection.disconnect();
    }
  };
  try {
    jobId = await stack.enqueue('/api/backup', { tables: [table], label: 'api bench (queued)' });
    await expectState(stack, jobId, 'queued');
    return { jobId, release, more };
  } catch (error) {
    await release();
    throw error;
  }
}

async function expectState(stack: BenchContext['stack'], jobId: string, state: string) {
  const { body } = await stack.request<{ data?: { state?: string } }>('GET', `/api/jobs/${jobId}`);
  if (body.data?.state !== state) {
    throw new Error(`job ${jobId} is ${body.data?.state ?? 'missing'}, not ${state}`);
  }
}

/**
 * Section 5. autocannon (bounded duration, local) against `GET /api/jobs/:id` for a finished
 * job (a completed backup) and for an unfinished one (a queued backup), `GET /api/backup` and a
 * bare Fastify route in a process of its own, in turns.
 */
export async function benchApi(
  ctx: BenchContext,
  options: {
    connections: number;
    durationSec: number;
    /** The panel-like load's client counts (empty: not run), seconds per step, p99 limit. */
    panelSteps: number[];
    panelStepSeconds: number;
    panelP99LimitMs: number;
  },
): Promise<ApiSection> {
  await ensureArtifacts(ctx, { pgkeep: true });
  const { stack } = ctx;
  // The jobs back up the dataset's smallest table: cheap to run, the same on every dataset.
  const table = (await datasetTables(ctx.database)).at(-1)?.name as string;
  const jobId = await stack.enqueue('/api/backup', { tables: [table], label: 'api bench' });
  await stack.waitForJob(jobId);
  const listed = await stack.request<{ count: number }>('GET', '/api/backup');
  const meta = sectionMeta(ctx.runs, ctx.code);
  const auth = { authorization: `Bearer ${stack.token}` };
  const port = await freePort();
  const unfinished = await holdUnfinishedJob(stack, table);
  const bare = startNodeApp(
    path.join(ROOT, 'bench/bare-server.ts'),
    { PORT: String(port) },
    path.join(ctx.workDir, 'bare.log'),
  );
  const targets = {
    job: {
      label: '`GET /api/jobs/:id`, finished job (completed)',
      url: `${stack.baseUrl}/api/jobs/${jobId}`,
      headers: auth,
    },
    jobActive: {
      label: '`GET /api/jobs/:id`, unfinished job (queued)',
      url: `${stack.baseUrl}/api/jobs/${unfinished.jobId}`,
      headers: auth,
    },
    list: {
      label: `\`GET /api/backup\` (${listed.body.count} backups)`,
      url: `${stack.baseUrl}/api/backup`,
      headers: auth,
    },
    bare: { label: 'bare Fastify route', url: `http://127.0.0.1:${port}/bare`, headers: {} },
  };
  const variants = {
    job: { label: targets.job.label, runs: [] as ApiRun[] },
    jobActive: { label: targets.jobActive.label, runs: [] as ApiRun[] },
    list: { label: targets.list.label, runs: [] as ApiRun[] },
    bare: { label: targets.bare.label, runs: [] as ApiRun[] },
  } satisfies ApiSection['variants'];
  let panel: ApiSection['panel'];
  try {
    await waitForHttp(targets.bare.url);
    // Warm-up: JIT and connections, not counted.
    for (const target of Object.values(targets)) {
      await load(target.url, target.headers, options.connections, 3);
    }
    for (let round = 1; round <= ctx.runs; round += 1) {
      ctx.log(` round ${round}/${ctx.runs}`);
      const rps: Partial<Record<keyof typeof targets, number>> = {};
      for (const key of ['job', 'jobActive', 'list', 'bare'] as const) {
        const target = targets[key];
        const run = await load(
          target.url,
          target.headers,
          options.connections,
          options.durationSec,
        );
        variants[key].runs.push(run);
        rps[key] = run.requestsPerSec;
        ctx.log(
          `  ${target.label}: ${run.requestsPerSec.toFixed(0)} req/s, p50 ${run.p50Ms} ms, p99 ${run.p99Ms} ms` +
            (run.non2xx + run.errors > 0 ? `, ${run.non2xx} non-2xx, ${run.errors} errors` : ''),
        );
      }
      const ofBare = (key: 'job' | 'jobActive') =>
        `${(((rps[key] ?? 0) / (rps.bare ?? Number.NaN)) * 100).toFixed(0)} %`;
      ctx.log(`  ÷ bare this round: finished ${ofBare('job')}, unfinished ${ofBare('jobActive')}`);
    }
    if (options.panelSteps.length > 0) {
      ctx.log(' panel-like load: clients polling their own queued job once a second');
      panel = await panelLoad(ctx, {
        enqueue: unfinished.more,
        steps: options.panelSteps,
        stepSeconds: options.panelStepSeconds,
        p99LimitMs: options.panelP99LimitMs,
      });
    }
    // Polled as what it was meant to be throughout: still queued.
    await expectState(stack, unfinished.jobId, 'queued');
  } finally {
    await stopChild(bare);
    await unfinished.release();
  }
  return {
    ...meta.finish(),
    connections: options.connections,
    durationSec: options.durationSec,
    backupsListed: listed.body.count,
    variants,
    ...(panel ? { panel } : {}),
  };
}
