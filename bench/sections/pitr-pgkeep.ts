import { performance } from 'node:perf_hooks';
import { loadAverage } from '../lib/machine.js';
import { cpuMs } from '../lib/memory.js';
import type { PgkeepStack } from '../lib/pgkeep.js';
import type { PitrPgkeepRun } from '../lib/results.js';
import { runTool } from '../lib/tools.js';
import { median, sleep } from '../lib/util.js';

/** The PITR section's side of pgkeep's API: the window, a restore to a point in time. */

export interface PitrView {
  from: string | null;
  to: string | null;
  lagSeconds: number | null;
}

export async function pitrView(stack: PgkeepStack, target: string): Promise<PitrView> {
  const { status, body } = await stack.request<{ data: PitrView }>(
    'GET',
    `/api/targets/${encodeURIComponent(target)}/pitr`,
  );
  if (status !== 200) throw new Error(`GET pitr: ${status} ${JSON.stringify(body)}`);
  return body.data;
}

export async function until<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 180_000,
) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

/**
 * How long `node -e 0` takes now (median of 5): pgkeep's restore_command is a Node script, so
 * a recovery pays it once per WAL file.
 */
export async function nodeStartTime(): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < 5; i += 1) {
    const started = performance.now();
    await runTool(process.execPath, ['-e', '0'], { PATH: process.env.PATH ?? '/usr/bin:/bin' });
    times.push(performance.now() - started);
  }
  return median(times);
}

export async function pgkeepRestore(
  stack: PgkeepStack,
  target: string,
  database: string,
  pointInTime: string,
) {
  const pid = stack.worker.pid ?? 0;
  const cpuBefore = cpuMs(pid);
  const load = loadAverage()[0] ?? 0;
  const started = Date.now();
  const jobId = await stack.enqueue(`/api/targets/${encodeURIComponent(target)}/restore`, {
    pointInTime,
    confirm: database,
  });
  const seen: Record<string, number> = {};
  const job = await stack.waitForJob(jobId, { phases: seen, intervalMs: 100 });
  const result = job.result as unknown as Omit<
    PitrPgkeepRun,
    'totalMs' | 'polledPhases' | 'workerCpuMs' | 'load'
  > & { previousDatabase: string | null };
  const run: PitrPgkeepRun = {
    totalMs: Date.parse(job.finishedAt ?? '') - started,
    durationMs: result.durationMs,
    phases: result.phases,
    downtimeMs: result.downtimeMs,
    walFilesFetched: result.walFilesFetched,
    walBytesFetched: result.walBytesFetched,
    recoveredTo: result.recoveredTo,
    polledPhases: Object.fromEntries(Object.entries(seen).map(([k, at]) => [k, at - started])),
    workerCpuMs: cpuMs(pid) - cpuBefore,
    load,
  };
  return { run, previousDatabase: result.previousDatabase };
}
