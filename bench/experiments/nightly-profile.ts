import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type PgkeepStack, ROOT, startPgkeep } from '../lib/pgkeep.js';
import type { TargetsPgkeepRun } from '../lib/results.js';
import {
  createTargetDatabases,
  dropTargetDatabases,
  targetDatabaseNames,
} from '../lib/target-databases.js';
import { runTool } from '../lib/tools.js';
import { median } from '../lib/util.js';
import { pgkeepNight, targetsFile } from '../sections/targets.js';

/**
 * Nightly runs of the targets section outside the bench, to see where a backup's time goes:
 * one pgkeep per BACKUP_CONCURRENCY in `--concurrency`, their nights alternating (after one
 * untimed night each), each night's slot times printed; with `--profile` the workers run under
 * `node --cpu-prof` and their profiles are summarised (profile-summary.ts).
 *   npx tsx bench/experiments/nightly-profile.ts --databases 20 --nights 3 --cap 1 --concurrency 1,2
 */
const { values } = parseArgs({
  options: {
    databases: { type: 'string', default: '20' },
    nights: { type: 'string', default: '2' },
    cap: { type: 'string', default: '1' },
    concurrency: { type: 'string', default: '2' },
    profile: { type: 'boolean', default: false },
  },
});
const cap = Number(values.cap);
const prefix = 'pgkeep_bench_prof_';
const names = targetDatabaseNames(prefix, Number(values.databases));
const workDir = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-nightly-'));
const log = (line: string) => process.stdout.write(`${line}\n`);

/** Medians over the night's backups (ms): the slot's hold and its parts, the slot's idle gaps. */
function slotTimes(run: TargetsPgkeepRun): string {
  const med = (values: number[]) => median(values).toFixed(0);
  const bySlot = new Map<string, TargetsPgkeepRun['jobs']>();
  for (const job of run.jobs) bySlot.set(job.slot, [...(bySlot.get(job.slot) ?? []), job]);
  const gaps = [...bySlot.values()].flatMap((jobs) => {
    jobs.sort((a, b) => a.slotAcquiredMs - b.slotAcquiredMs);
    return jobs.slice(1).map((job, i) => job.slotAcquiredMs - (jobs[i]?.slotReleasedMs ?? 0));
  });
  const { jobs } = run;
  return [
    `held ${med(jobs.map((j) => j.slotReleasedMs - j.slotAcquiredMs))}`,
    `(prepare ${med(jobs.map((j) => j.backupStartedMs - j.slotAcquiredMs))}`,
    `dump ${med(jobs.map((j) => j.backupCompletedMs - j.backupStartedMs))}`,
    `close ${med(jobs.map((j) => j.slotReleasedMs - j.backupCompletedMs))})`,
    `idle gap ${med(gaps)}`,
  ].join(' ');
}

try {
  const databases = await createTargetDatabases(names, log);
  const stacks: { concurrency: string; stack: PgkeepStack; file: string }[] = [];
  try {
    for (const concurrency of values.concurrency.split(',')) {
      const dir = path.join(workDir, `c${concurrency}`);
      await mkdir(path.join(dir, 'profiles'), { recursive: true });
      const file = path.join(dir, 'targets.json');
      await writeFile(file, targetsFile(prefix, cap, 'off'));
      const stack = await startPgkeep({
        database: 'postgres',
        workDir: dir,
        logLevel: 'info',
        env: { TARGETS_FILE: file, BACKUP_CONCURRENCY: concurrency },
        ...(values.profile
          ? { workerNodeArgs: ['--cpu-prof', `--cpu-prof-dir=${path.join(dir, 'profiles')}`] }
          : {}),
      });
      stacks.push({ concurrency, stack, file });
      await pgkeepNight(stack, file, prefix, cap, databases);
    }
    for (let night = 1; night <= Number(values.nights); night += 1) {
      for (const { concurrency, stack, file } of stacks) {
        const run = await pgkeepNight(stack, file, prefix, cap, databases);
        log(
          `night ${night}, cap ${cap}, BACKUP_CONCURRENCY=${concurrency}: ${(run.wallMs / 1000).toFixed(1)} s, ${slotTimes(run)}, worker CPU ${(run.workerCpuMs / names.length).toFixed(0)} ms per backup, load ${run.load}`,
        );
      }
    }
  } finally {
    for (const { stack } of stacks) await stack.stop();
  }
  if (values.profile) {
    for (const { concurrency } of stacks) {
      const dir = path.join(workDir, `c${concurrency}`, 'profiles');
      for (const profile of await readdir(dir)) {
        const summary = await runTool(
          process.execPath,
          [
            '--import',
            'tsx',
            path.join(ROOT, 'bench/profile-summary.ts'),
            path.join(dir, profile),
            '--top',
            '20',
          ],
          { PATH: process.env.PATH ?? '/usr/bin:/bin' },
        );
        log(`BACKUP_CONCURRENCY=${concurrency}: ${summary}`);
      }
    }
  }
} finally {
  await dropTargetDatabases(names);
  await rm(workDir, { recursive: true, force: true });
}
