import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startPgkeep } from '../lib/pgkeep.js';

/**
 * Where a pgkeep backup's wall time goes, from the worker's own log (LOG_LEVEL=debug):
 *   npx tsx bench/experiments/backup-phases.ts --db pgkeep_bench_s1
 */
const { values } = parseArgs({ options: { db: { type: 'string' } } });
if (!values.db) throw new Error('--db is required');
const workDir = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-phases-'));
const stack = await startPgkeep({ database: values.db, workDir, logLevel: 'debug' });
try {
  const posted = Date.now();
  const jobId = await stack.enqueue('/api/backup', {});
  const phases: Record<string, number> = {};
  await stack.waitForJob(jobId, { intervalMs: 20, timeoutMs: 600_000, phases });
  const done = Date.now();
  const lines = (await readFile(path.join(workDir, 'worker.log'), 'utf8'))
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { time: number; msg: string });
  for (const line of lines.filter((l) => l.time >= posted)) {
    process.stdout.write(`${String(line.time - posted).padStart(6)} ms  ${line.msg}\n`);
  }
  process.stdout.write(
    `phases (first seen): ${JSON.stringify(Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, v - posted])))}\n`,
  );
  process.stdout.write(`POST → completed: ${done - posted} ms\n`);
} finally {
  await stack.stop();
  await rm(workDir, { recursive: true, force: true });
}
