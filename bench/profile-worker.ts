import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type BenchContext, dropReplaced, pgkeepBackup } from './lib/context.js';
import { cpuMs } from './lib/memory.js';
import { ROOT, startPgkeep } from './lib/pgkeep.js';
import { runTool } from './lib/tools.js';
import { pgkeepRestore } from './sections/restore.js';

/**
 * Profiling aid for sections 1, 2 and 4: one pgkeep backup and one restore of `--db` with the
 * worker under `node --cpu-prof`, then where the worker's CPU time went (profile-summary.ts).
 *   npx tsx bench/profile-worker.ts --db pgkeep_bench_s1
 */
const { values } = parseArgs({ options: { db: { type: 'string' } } });
if (!values.db) throw new Error('--db is required');
const workDir = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-profile-'));
const profiles = path.join(workDir, 'profiles');
const stack = await startPgkeep({
  database: values.db,
  workDir,
  workerNodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profiles}`],
});
try {
  const log = (line: string) => process.stdout.write(`${line}\n`);
  const ctx: BenchContext = {
    scale: 0,
    kind: 'panel',
    sizeBytes: 0,
    dumpBytes: 0,
    runs: 1,
    database: values.db,
    workDir,
    stack,
    log,
  };
  const pid = stack.worker.pid ?? 0;
  let cpu = cpuMs(pid);
  const backup = await pgkeepBackup(ctx);
  log(
    `backup: ${(backup.ms / 1000).toFixed(1)} s, worker CPU ${((cpuMs(pid) - cpu) / 1000).toFixed(1)} s`,
  );
  cpu = cpuMs(pid);
  const restore = await pgkeepRestore(ctx);
  log(
    `restore: ${(restore.ms / 1000).toFixed(1)} s, worker CPU ${((cpuMs(pid) - cpu) / 1000).toFixed(1)} s, phases ${JSON.stringify(restore.phases)}`,
  );
  await dropReplaced(restore.previousDatabase);
} finally {
  await stack.stop();
}
for (const file of await readdir(profiles)) {
  const summary = await runTool(
    process.execPath,
    [
      '--import',
      'tsx',
      path.join(ROOT, 'bench/profile-summary.ts'),
      path.join(profiles, file),
      '--top',
      '30',
    ],
    { PATH: process.env.PATH ?? '/usr/bin:/bin' },
  );
  process.stdout.write(`${summary}\n`);
}
await rm(workDir, { recursive: true, force: true });
