import { rm } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  type BenchContext,
  dropReplaced,
  ensureArtifacts,
  phasesSince,
  rawDir,
  seconds,
  sectionMeta,
  workerHwmMb,
  workerRssMb,
} from '../lib/context.js';
import { dropDatabase, settleWrites, toolEnv } from '../lib/db.js';
import { cpuMs, emptyPeaks, mergePeaks, RssSampler } from '../lib/memory.js';
import type { RestoreSection, Variant } from '../lib/results.js';
import { runPipeline } from '../lib/tools.js';

/** A pgkeep restore of its newest backup into the dataset's own database (verify → swap). */
export async function pgkeepRestore(ctx: BenchContext) {
  const backup = ctx.pgkeepBackup;
  if (!backup) throw new Error('no pgkeep backup to restore');
  const t0 = Date.now();
  const jobId = await ctx.stack.enqueue(`/api/backup/${backup.id}/restore`, {
    confirm: ctx.database,
    target: ctx.database,
  });
  const seen: Record<string, number> = {};
  const job = await ctx.stack.waitForJob(jobId, { phases: seen });
  const ms = Date.parse(job.finishedAt ?? '') - t0;
  const result = job.result as {
    previousDatabase: string | null;
    downtimeMs: number;
    durationMs: number;
  };
  return {
    ms,
    phases: phasesSince(seen, t0),
    jobMs: result.durationMs,
    previousDatabase: result.previousDatabase,
    swapMs: result.downtimeMs,
  };
}

/** A raw restore into a fresh empty database; `work` gets its name. Dropped afterwards. */
async function intoEmptyDatabase(
  ctx: BenchContext,
  work: (database: string) => Promise<void>,
): Promise<number> {
  const database = `${ctx.database}_raw`;
  await dropDatabase(database);
  await settleWrites();
  const started = performance.now();
  await runPipeline([{ command: 'createdb', args: ['-T', 'template0', database] }], {
    env: toolEnv('postgres'),
  });
  await work(database);
  const ms = performance.now() - started;
  await dropDatabase(database);
  return ms;
}

const pgRestore = (database: string, extra: string[]) => ({
  command: 'pg_restore',
  args: ['--exit-on-error', '-d', database, ...extra],
});

/**
 * Section 2. Rounds of: pgkeep restore; `zstd -d | pg_restore` and `zstd -d` to a file then
 * `pg_restore -j 2` (the same artifact, into an empty database; the faster of the two is the
 * baseline); and `pg_restore -j 2` of a `pg_dump -Fc` archive. In that order in odd rounds, the
 * reverse in even ones.
 */
export async function benchRestore(ctx: BenchContext): Promise<RestoreSection> {
  await ensureArtifacts(ctx, { pgkeep: true, fc: true });
  const meta = sectionMeta(ctx.runs, ctx.code);
  const artifact = ctx.pgkeepBackup?.file as string;
  const fcFile = ctx.fcFile as string;
  const variants: RestoreSection['variants'] = {
    pgkeep: { label: 'pgkeep (verify + temp db + validate + swap)', runs: [] },
    rawPipe: { label: '`zstd -d | pg_restore` (same artifact)', runs: [] },
    rawFile: { label: '`zstd -d -o f && pg_restore -j 2 f` (same artifact)', runs: [] },
    fcJobs: { label: '`pg_restore -j 2` of a `pg_dump -Fc` archive', runs: [] },
  };
  const swapMs: number[] = [];
  const idleMb = workerRssMb(ctx);
  const memory = emptyPeaks();
  const record = (variant: Variant, ms: number) => {
    variant.runs.push({ ms });
    ctx.log(`  ${variant.label}: ${seconds(ms)}`);
  };
  const env = toolEnv('postgres');
  const runPgkeep = async () => {
    const pid = ctx.stack.worker.pid ?? 0;
    const sampler = new RssSampler(pid).start();
    const cpuBefore = cpuMs(pid);
    const pgkeep = await pgkeepRestore(ctx);
    const workerCpuMs = cpuMs(pid) - cpuBefore;
    const peaks = sampler.stop();
    mergePeaks(memory, peaks);
    variants.pgkeep.runs.push({
      ms: pgkeep.ms,
      jobMs: pgkeep.jobMs,
      workerCpuMs,
      phases: pgkeep.phases,
    });
    ctx.log(`  ${variants.pgkeep.label}: ${seconds(pgkeep.ms)} (job ${seconds(pgkeep.jobMs)})`);
    swapMs.push(pgkeep.swapMs);
    await dropReplaced(pgkeep.previousDatabase);
  };
  const runRawPipe = async () =>
    record(
      variants.rawPipe,
      await intoEmptyDatabase(ctx, async (database) => {
        await runPipeline(
          [{ command: 'zstd', args: ['-d', '-q', '-c', artifact] }, pgRestore(database, [])],
          { env },
        );
      }),
    );
  const runRawFile = async () =>
    record(
      variants.rawFile,
      await intoEmptyDatabase(ctx, async (database) => {
        const file = path.join(rawDir(ctx), 'restore.dump');
        await runPipeline([{ command: 'zstd', args: ['-d', '-q', '-f', '-o', file, artifact] }], {
          env,
        });
        await runPipeline([pgRestore(database, ['-j', '2', file])], { env });
        await rm(file, { force: true });
      }),
    );
  const runFcJobs = async () =>
    record(
      variants.fcJobs,
      await intoEmptyDatabase(ctx, async (database) => {
        await runPipeline([pgRestore(database, ['-j', '2', fcFile])], { env });
      }),
    );
  for (let round = 1; round <= ctx.runs; round += 1) {
    ctx.log(` round ${round}/${ctx.runs}`);
    // Odd rounds pgkeep first, even rounds last: a machine that speeds up or slows down during
    // the section favours no variant. Every run starts with the last one's writes on disk.
    const order = [runPgkeep, runRawPipe, runRawFile, runFcJobs];
    for (const run of round % 2 === 1 ? order : order.reverse()) {
      await settleWrites();
      await run();
    }
  }
  return {
    ...meta.finish(),
    variants,
    swapMs,
    memory: { idleMb, hwmMb: workerHwmMb(ctx), ...memory },
  };
}
