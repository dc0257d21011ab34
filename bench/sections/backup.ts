import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import path from 'node:path';
import { COUNTING_SESSION_SETTINGS, sessionOptions } from '@pgkeep/pg';
import {
  type BenchContext,
  datasetTables,
  dumpCustom,
  dumpPlain,
  fileSize,
  megabytes,
  pgkeepBackup,
  rawDir,
  rowCountsSql,
  seconds,
  sectionMeta,
  workerHwmMb,
  workerRssMb,
} from '../lib/context.js';
import { settleWrites, toolEnv } from '../lib/db.js';
import { cpuMs, emptyPeaks, mergePeaks, RssSampler } from '../lib/memory.js';
import type { BackupSection, TimedRun, Variant } from '../lib/results.js';
import { runPipeline, runTool } from '../lib/tools.js';

/** The best raw pipeline for pgkeep's output: `pg_dump -Fc -Z0 | zstd -3 -T2` into a file. */
async function rawZstd(ctx: BenchContext): Promise<{ ms: number; bytes: number }> {
  const file = path.join(rawDir(ctx), 'dataset.dump.zst');
  await rm(file, { force: true });
  const ms = await runPipeline(
    [
      { command: 'pg_dump', args: ['-Fc', '-Z0', ctx.database] },
      { command: 'zstd', args: ['-3', '-T2', '-q', '-c'] },
    ],
    { env: toolEnv(ctx.database), stdoutFile: file },
  );
  return { ms, bytes: await fileSize(file) };
}

/**
 * The raw pipeline plus the integrity work pgkeep does on every backup and the raw pipeline
 * does not: exact row counts of every table (beside the dump, as pgkeep does), the sha256 of
 * the file, and fsync. Not a target; it shows how much of the gap that work is.
 */
async function rawZstdChecked(
  ctx: BenchContext,
  countsSql: string,
): Promise<{ ms: number; bytes: number }> {
  const file = path.join(rawDir(ctx), 'dataset.dump.zst');
  await rm(file, { force: true });
  const started = performance.now();
  // On a session of pgkeep's counting settings (one process a table, no JIT), as pgkeep counts.
  const counting = runTool('psql', ['-X', '-Atq', '-d', ctx.database, '-c', countsSql], {
    ...toolEnv(ctx.database),
    PGOPTIONS: sessionOptions(COUNTING_SESSION_SETTINGS),
  });
  await runPipeline(
    [
      { command: 'pg_dump', args: ['-Fc', '-Z0', ctx.database] },
      { command: 'zstd', args: ['-3', '-T2', '-q', '-c'] },
    ],
    { env: toolEnv(ctx.database), stdoutFile: file },
  );
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024 })) {
    hash.update(chunk as Buffer);
  }
  hash.digest('hex');
  const handle = await open(file, 'r');
  await handle.sync();
  await handle.close();
  await counting;
  return { ms: performance.now() - started, bytes: await fileSize(file) };
}

/**
 * Section 1. Rounds of pgkeep (POST → job completed, manifest written) and the raw zstd pipeline
 * (alone, and with pgkeep's checks), in that order in odd rounds and the reverse in even ones; `pg_dump -Fc` and the panel's
 * plain `pg_dump` in the first round only.
 */
export async function benchBackup(ctx: BenchContext): Promise<BackupSection> {
  const countsSql = rowCountsSql(await datasetTables(ctx.database));
  const meta = sectionMeta(ctx.runs, ctx.code);
  const variants: BackupSection['variants'] = {
    pgkeep: {
      label: 'pgkeep (POST → job completed)',
      runs: [],
      shape: { variant: 'single', jobs: 1, format: 'custom' },
    },
    zstd: { label: '`pg_dump -Fc -Z0 | zstd -3 -T2`', runs: [] },
    zstdChecked: {
      label: 'the same, plus row counts, sha256 of the file and fsync (as pgkeep does)',
      runs: [],
    },
    ...(ctx.parallelJobs
      ? {
          pgkeepParallel: {
            label: `pgkeep, directory format, pg_dump --jobs=${ctx.parallelJobs} (POST → job completed)`,
            runs: [],
            shape: { variant: 'parallel' as const, jobs: ctx.parallelJobs, format: 'directory' },
          },
        }
      : {}),
    fc: { label: '`pg_dump -Fc` (built-in gzip)', runs: [] },
    plain: { label: '`pg_dump` plain SQL (panel, old)', runs: [] },
  };
  const idleMb = workerRssMb(ctx);
  const memory = emptyPeaks();
  const record = (variant: Variant, run: TimedRun & { bytes: number }) => {
    variant.runs.push(run);
    ctx.log(`  ${variant.label}: ${seconds(run.ms)}, ${megabytes(run.bytes)}`);
  };
  const runPgkeep = async () => {
    const pid = ctx.stack.worker.pid ?? 0;
    const sampler = new RssSampler(pid).start();
    await settleWrites();
    const cpuBefore = cpuMs(pid);
    const { jobId: _jobId, ...pgkeep } = await pgkeepBackup(ctx);
    const workerCpuMs = cpuMs(pid) - cpuBefore;
    const peaks = sampler.stop();
    mergePeaks(memory, peaks);
    record(variants.pgkeep, { ...pgkeep, workerCpuMs });
    if (variants.pgkeepParallel && ctx.parallelJobs) {
      await settleWrites();
      const parallelCpu = cpuMs(pid);
      const { jobId: _parallelJob, ...parallel } = await pgkeepBackup(ctx, {
        format: 'directory',
        jobs: ctx.parallelJobs,
      });
      record(variants.pgkeepParallel, { ...parallel, workerCpuMs: cpuMs(pid) - parallelCpu });
    }
  };
  const runRaw = async () => {
    await settleWrites();
    record(variants.zstd, await rawZstd(ctx));
  };
  const runRawChecked = async () => {
    await settleWrites();
    record(variants.zstdChecked as Variant, await rawZstdChecked(ctx, countsSql));
  };
  for (let round = 1; round <= ctx.runs; round += 1) {
    ctx.log(` round ${round}/${ctx.runs}`);
    // Odd rounds pgkeep first, even rounds last: a machine that speeds up or slows down during
    // the section favours no variant.
    const order = [runPgkeep, runRaw, runRawChecked];
    for (const run of round % 2 === 1 ? order : order.reverse()) await run();
    // The two references pgkeep is not measured against (and the restore section's archive)
    // once: at scale 1 the built-in gzip alone takes minutes a run.
    if (round === 1) {
      await settleWrites();
      const fcMs = await dumpCustom(ctx);
      record(variants.fc, { ms: fcMs, bytes: await fileSize(ctx.fcFile as string) });
      await settleWrites();
      const plainMs = await dumpPlain(ctx);
      record(variants.plain, { ms: plainMs, bytes: await fileSize(ctx.plainFile as string) });
    }
  }
  await rm(path.join(rawDir(ctx), 'dataset.dump.zst'), { force: true });
  return {
    ...meta.finish(),
    variants,
    memory: { idleMb, hwmMb: workerHwmMb(ctx), ...memory },
  };
}
