import { performance } from 'node:perf_hooks';
import type { BenchContext } from '../lib/context.js';
import { cpuMs } from '../lib/memory.js';
import type { ApiPanelLoad, ApiPanelStep } from '../lib/results.js';
import { sleep } from '../lib/util.js';

const POLL_INTERVAL_MS = 1_000;

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] as number;
}

/**
 * One step: `jobIds.length` clients, each polling its own job once a second, their first polls
 * spread evenly over the first second (as panels opened at different times), for `seconds`.
 * A client whose poll is still out when its next is due skips that one (counted as late), as a
 * browser's setTimeout loop would. Latency: request sent → body read, in this process.
 */
async function step(
  stack: BenchContext['stack'],
  jobIds: string[],
  seconds: number,
): Promise<ApiPanelStep> {
  const clients = jobIds.length;
  const latencies: number[] = [];
  let errors = 0;
  let non2xx = 0;
  let late = 0;
  const apiPid = stack.api.pid ?? 0;
  const cpuBefore = cpuMs(apiPid);
  const started = performance.now();
  const end = started + seconds * 1000;
  const headers = { authorization: `Bearer ${stack.token}` };
  await Promise.all(
    jobIds.map(async (jobId, index) => {
      const url = `${stack.baseUrl}/api/jobs/${jobId}`;
      let due = started + (index / clients) * POLL_INTERVAL_MS;
      for (;;) {
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
        if (performance.now() >= end) return;
        const sent = performance.now();
        try {
          const response = await fetch(url, { headers });
          await response.arrayBuffer();
          if (response.status < 200 || response.status > 299) non2xx += 1;
          latencies.push(performance.now() - sent);
        } catch {
          errors += 1;
        }
        due += POLL_INTERVAL_MS;
        while (due < performance.now()) {
          due += POLL_INTERVAL_MS;
          late += 1;
        }
      }
    }),
  );
  const wallMs = performance.now() - started;
  const apiCpuMs = cpuMs(apiPid) - cpuBefore;
  const sorted = Float64Array.from(latencies).sort();
  const pollsPerSec = latencies.length / (wallMs / 1000);
  const apiCores = apiCpuMs / wallMs;
  return {
    clients,
    polls: latencies.length,
    pollsPerSec,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    maxMs: sorted.length > 0 ? (sorted[sorted.length - 1] as number) : Number.NaN,
    errors,
    non2xx,
    late,
    apiCpuMs,
    apiCores,
    pollsPerCoreSec: apiCores > 0 ? pollsPerSec / apiCores : Number.NaN,
  };
}

/**
 * A panel-like load on `GET /api/jobs/:id`: at each step as many queued jobs as clients (the
 * backups queue is paused by the caller, so they stay queued: one Redis read per poll), each
 * client polling its own job once a second; the clients grow step by step until p99 exceeds
 * `p99LimitMs` or a poll fails. What is reported per step: polls/s, p50/p99, and the API
 * process's CPU (from /proc/<pid>/stat) as polls/s per core it used.
 */
export async function panelLoad(
  ctx: BenchContext,
  options: {
    enqueue: () => Promise<string>;
    steps: number[];
    stepSeconds: number;
    p99LimitMs: number;
  },
): Promise<ApiPanelLoad> {
  const jobIds: string[] = [];
  const steps: ApiPanelStep[] = [];
  let stoppedBy: string | null = null;
  for (const clients of options.steps) {
    while (jobIds.length < clients) {
      // In small batches: the API's own POST path, not a flood of it.
      const batch = Math.min(50, clients - jobIds.length);
      jobIds.push(...(await Promise.all(Array.from({ length: batch }, options.enqueue))));
    }
    const result = await step(ctx.stack, jobIds.slice(0, clients), options.stepSeconds);
    steps.push(result);
    ctx.log(
      `  panel load, ${clients} clients: ${result.pollsPerSec.toFixed(0)} polls/s, p50 ${result.p50Ms.toFixed(1)} ms, p99 ${result.p99Ms.toFixed(1)} ms, API ${result.apiCores.toFixed(2)} cores → ${result.pollsPerCoreSec.toFixed(0)} polls/s per core` +
        (result.errors + result.non2xx + result.late > 0
          ? `, ${result.errors} errors, ${result.non2xx} non-2xx, ${result.late} late`
          : ''),
    );
    if (result.errors + result.non2xx > 0) {
      stoppedBy = `errors at ${clients} clients`;
      break;
    }
    if (result.p99Ms > options.p99LimitMs) {
      stoppedBy = `p99 over ${options.p99LimitMs} ms at ${clients} clients`;
      break;
    }
  }
  const within = steps.filter((s) => s.errors + s.non2xx === 0 && s.p99Ms <= options.p99LimitMs);
  return {
    pollIntervalMs: POLL_INTERVAL_MS,
    stepSeconds: options.stepSeconds,
    p99LimitMs: options.p99LimitMs,
    steps,
    stoppedBy,
    sustained: within.at(-1) ?? null,
  };
}
