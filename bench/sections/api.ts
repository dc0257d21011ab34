import path from 'node:path';
import autocannon from 'autocannon';
import { type BenchContext, ensureArtifacts, sectionMeta } from '../lib/context.js';
import { freePort, ROOT, startNodeApp, stopChild } from '../lib/pgkeep.js';
import type { ApiRun, ApiSection } from '../lib/results.js';
import { sleep } from '../lib/util.js';

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
 * Section 5. autocannon (bounded duration, local) against `GET /api/jobs/:id` (a completed
 * backup job), `GET /api/backup` and a bare Fastify route in a process of its own, in turns.
 */
export async function benchApi(
  ctx: BenchContext,
  options: { connections: number; durationSec: number },
): Promise<ApiSection> {
  await ensureArtifacts(ctx, { pgkeep: true });
  const { stack } = ctx;
  const jobId = await stack.enqueue('/api/backup', { tables: ['User'], label: 'api bench' });
  await stack.waitForJob(jobId);
  const listed = await stack.request<{ count: number }>('GET', '/api/backup');
  const port = await freePort();
  const bare = startNodeApp(
    path.join(ROOT, 'bench/bare-server.ts'),
    { PORT: String(port) },
    path.join(ctx.workDir, 'bare.log'),
  );
  const meta = sectionMeta(ctx.runs, ctx.code);
  const auth = { authorization: `Bearer ${stack.token}` };
  const targets = {
    job: { label: '`GET /api/jobs/:id`', url: `${stack.baseUrl}/api/jobs/${jobId}`, headers: auth },
    list: {
      label: `\`GET /api/backup\` (${listed.body.count} backups)`,
      url: `${stack.baseUrl}/api/backup`,
      headers: auth,
    },
    bare: { label: 'bare Fastify route', url: `http://127.0.0.1:${port}/bare`, headers: {} },
  };
  const variants: ApiSection['variants'] = {
    job: { label: targets.job.label, runs: [] },
    list: { label: targets.list.label, runs: [] },
    bare: { label: targets.bare.label, runs: [] },
  };
  try {
    await waitForHttp(targets.bare.url);
    // Warm-up: JIT and connections, not counted.
    for (const target of Object.values(targets)) {
      await load(target.url, target.headers, options.connections, 3);
    }
    for (let round = 1; round <= ctx.runs; round += 1) {
      ctx.log(` round ${round}/${ctx.runs}`);
      for (const key of ['job', 'list', 'bare'] as const) {
        const target = targets[key];
        const run = await load(
          target.url,
          target.headers,
          options.connections,
          options.durationSec,
        );
        variants[key].runs.push(run);
        ctx.log(
          `  ${target.label}: ${run.requestsPerSec.toFixed(0)} req/s, p50 ${run.p50Ms} ms, p99 ${run.p99Ms} ms` +
            (run.non2xx + run.errors > 0 ? `, ${run.non2xx} non-2xx, ${run.errors} errors` : ''),
        );
      }
    }
  } finally {
    await stopChild(bare);
  }
  return {
    ...meta.finish(),
    connections: options.connections,
    durationSec: options.durationSec,
    backupsListed: listed.body.count,
    variants,
  };
}
