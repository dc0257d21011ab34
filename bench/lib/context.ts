import { rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { DatasetKind } from '../generate-dataset.js';
import { dropDatabase, serverUrl, toolEnv, withClient } from './db.js';
import { loadAverage } from './machine.js';
import { statusKb } from './memory.js';
import type { PgkeepStack } from './pgkeep.js';
import { ROOT } from './pgkeep.js';
import type { SectionMeta } from './results.js';
import { runPipeline, runTool } from './tools.js';

/** What the sections share: the dataset, the running pgkeep, and artifacts made on the way. */
export interface BenchContext {
  scale: number;
  /** pg_dump --jobs of a pgkeep directory-format backup run beside the single stream; 0: none. */
  parallelJobs?: number;
  /** Which generated dataset the database holds (bench/generate-dataset.ts). */
  kind: DatasetKind;
  /** pg_database_size of the dataset, and the bytes `pg_dump -Fc -Z0` writes for it. */
  sizeBytes: number;
  dumpBytes: number;
  runs: number;
  database: string;
  workDir: string;
  stack: PgkeepStack;
  log: (line: string) => void;
  /** Work to undo if the run stops midway (a section's own pgkeep, its databases). */
  cleanups?: Set<() => Promise<void>>;
  /** The code version the running worker and API were started from (see codeVersion). */
  code?: string;
  /** The newest pgkeep backup of the dataset (custom + zstd). */
  pgkeepBackup?: { id: string; file: string };
  /** `pg_dump -Fc` archive of the dataset. */
  fcFile?: string;
  /** `pg_dump` plain SQL of the dataset (the panel's old format). */
  plainFile?: string;
}

export const rawDir = (ctx: BenchContext) => path.join(ctx.workDir, 'raw');

/**
 * The commit of pgkeep's code (apps/ and packages/), `+dirty` when they hold uncommitted
 * changes: others edit the tree while a bench runs, and a number must say what it measured.
 */
export async function codeVersion(): Promise<string> {
  const git = (args: string[]) =>
    runTool('git', ['-C', ROOT, ...args], { PATH: process.env.PATH ?? '/usr/bin:/bin' });
  try {
    const head = (await git(['rev-parse', '--short', 'HEAD'])).trim();
    const dirty = (await git(['status', '--porcelain', '--', 'apps', 'packages'])).trim();
    return dirty ? `${head}+dirty` : head;
  } catch {
    return 'unknown';
  }
}

export function sectionMeta(runs: number, code?: string): { finish: () => SectionMeta } {
  const startedAt = new Date().toISOString();
  const load = loadAverage();
  return {
    finish: () => ({
      startedAt,
      finishedAt: new Date().toISOString(),
      loadAverage: load,
      runs,
      ...(code ? { code } : {}),
    }),
  };
}

export async function fileSize(file: string): Promise<number> {
  return (await stat(file)).size;
}

export function phasesSince(seen: Record<string, number>, t0: number): Record<string, number> {
  return Object.fromEntries(Object.entries(seen).map(([phase, at]) => [phase, at - t0]));
}

/** A full pgkeep backup through the API; its id, artifact path and the job as reported. */
export async function pgkeepBackup(ctx: BenchContext, body: Record<string, unknown> = {}) {
  const t0 = Date.now();
  const jobId = await ctx.stack.enqueue('/api/backup', body);
  const seen: Record<string, number> = {};
  const job = await ctx.stack.waitForJob(jobId, { phases: seen });
  const result = job.result as { id: string; filename: string; size: number; durationMs: number };
  const ms = Date.parse(job.finishedAt ?? '') - t0;
  // The restore section restores the default (custom) backup.
  if (body.format === undefined) {
    ctx.pgkeepBackup = { id: result.id, file: path.join(ctx.stack.backupDir, result.filename) };
  }
  return { ms, bytes: result.size, jobMs: result.durationMs, phases: phasesSince(seen, t0), jobId };
}

export async function dumpCustom(ctx: BenchContext): Promise<number> {
  const file = path.join(rawDir(ctx), 'dataset.dump');
  await rm(file, { force: true });
  const ms = await runPipeline([{ command: 'pg_dump', args: ['-Fc', '-f', file, ctx.database] }], {
    env: toolEnv(ctx.database),
  });
  ctx.fcFile = file;
  return ms;
}

export async function dumpPlain(ctx: BenchContext): Promise<number> {
  const file = path.join(rawDir(ctx), 'dataset.sql');
  await rm(file, { force: true });
  const ms = await runPipeline([{ command: 'pg_dump', args: ['-f', file, ctx.database] }], {
    env: toolEnv(ctx.database),
  });
  ctx.plainFile = file;
  return ms;
}

/** Makes sure the artifacts a section needs exist (made once, untimed, when missing). */
export async function ensureArtifacts(
  ctx: BenchContext,
  needs: { pgkeep?: boolean; fc?: boolean; plain?: boolean },
): Promise<void> {
  if (needs.pgkeep && !ctx.pgkeepBackup) {
    ctx.log('  making a pgkeep backup for this section');
    await pgkeepBackup(ctx);
  }
  if (needs.fc && !ctx.fcFile) {
    ctx.log('  making a pg_dump -Fc archive for this section');
    await dumpCustom(ctx);
  }
  if (needs.plain && !ctx.plainFile) {
    ctx.log('  making a plain SQL dump for this section');
    await dumpPlain(ctx);
  }
}

/** Drops the databases a pgkeep restore replaced (`<db>_pre_restore_…`). */
export async function dropReplaced(previous: unknown): Promise<void> {
  if (typeof previous === 'string' && previous.length > 0) await dropDatabase(previous);
}

export const workerRssMb = (ctx: BenchContext) =>
  statusKb(ctx.stack.worker.pid ?? 0, 'VmRSS') / 1024;
export const workerHwmMb = (ctx: BenchContext) =>
  statusKb(ctx.stack.worker.pid ?? 0, 'VmHWM') / 1024;

export const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
export const megabytes = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

/** The dataset's tables (schema public), largest first, with their size (heap and TOAST). */
export async function datasetTables(database: string): Promise<{ name: string; bytes: number }[]> {
  return withClient(serverUrl(database), async (client) => {
    const { rows } = await client.query<{ name: string; bytes: string }>(
      `SELECT c.relname AS name, pg_table_size(c.oid)::text AS bytes
       FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
       ORDER BY pg_table_size(c.oid) DESC, c.relname`,
    );
    return rows.map((row) => ({ name: row.name, bytes: Number(row.bytes) }));
  });
}

/** SQL of exact row counts of every table, as a backup's manifest records them. */
export function rowCountsSql(tables: { name: string }[]): string {
  return tables
    .map((table) => `SELECT count(*) FROM "${table.name.replaceAll('"', '""')}"`)
    .join('; ');
}
