import { performance } from 'node:perf_hooks';
import {
  type BenchContext,
  dropReplaced,
  ensureArtifacts,
  seconds,
  sectionMeta,
} from '../lib/context.js';
import { serverUrl, toolEnv, withClient } from '../lib/db.js';
import { AvailabilityProbe } from '../lib/probe.js';
import type { DowntimeRun, DowntimeSection } from '../lib/results.js';
import { runPipeline } from '../lib/tools.js';
import { pgkeepRestore } from './restore.js';

const PROBE_INTERVAL_MS = 50;

async function newestIds(database: string) {
  return withClient(serverUrl(database), async (client) => {
    const { rows } = await client.query<{ u: number; m: string }>(
      'SELECT (SELECT max(id) FROM "User") AS u, (SELECT max(id) FROM "WhatsappMessage") AS m',
    );
    return { userId: Number(rows[0]?.u), messageId: Number(rows[0]?.m) };
  });
}

/** Runs `restore` while the probe queries the target; the longest gap around it. */
async function probed(
  ctx: BenchContext,
  ids: { userId: number; messageId: number },
  restore: () => Promise<unknown>,
): Promise<{ run: DowntimeRun; outcome: unknown }> {
  const probe = new AvailabilityProbe(ctx.database, ids, PROBE_INTERVAL_MS).start();
  try {
    await probe.waitForSuccessAfter(performance.now());
    const from = performance.now();
    const outcome = await restore();
    const to = performance.now();
    // The window ends at the first good answer after the restore: the database is back.
    await probe.waitForSuccessAfter(to);
    const gapMs = probe.longestGap(from, to);
    return { run: { gapMs, totalMs: to - from, failedProbes: probe.failures }, outcome };
  } finally {
    await probe.stop();
  }
}

/**
 * Section 3. While a probe runs a query against the target every 50 ms: a pgkeep restore, then
 * the panel's old way (`dropdb`, `createdb`, `psql -f` of its plain SQL dump), in turns.
 */
export async function benchDowntime(ctx: BenchContext): Promise<DowntimeSection> {
  await ensureArtifacts(ctx, { pgkeep: true, plain: true });
  const meta = sectionMeta(ctx.runs, ctx.code);
  const ids = await newestIds(ctx.database);
  const pgkeep: DowntimeRun[] = [];
  const oldWay: DowntimeRun[] = [];
  const env = toolEnv('postgres');
  for (let round = 1; round <= ctx.runs; round += 1) {
    ctx.log(` round ${round}/${ctx.runs}`);
    const viaPgkeep = await probed(ctx, ids, () => pgkeepRestore(ctx));
    pgkeep.push(viaPgkeep.run);
    ctx.log(
      `  pgkeep: longest gap ${viaPgkeep.run.gapMs.toFixed(0)} ms, restore ${seconds(viaPgkeep.run.totalMs)}`,
    );
    await dropReplaced((viaPgkeep.outcome as { previousDatabase: string | null }).previousDatabase);

    const old = await probed(ctx, ids, async () => {
      await runPipeline([{ command: 'dropdb', args: ['--force', ctx.database] }], { env });
      await runPipeline([{ command: 'createdb', args: [ctx.database] }], { env });
      await runPipeline(
        [{ command: 'psql', args: ['-X', '-q', '-o', '/dev/null', '-f', ctx.plainFile as string] }],
        { env: toolEnv(ctx.database) },
      );
    });
    oldWay.push(old.run);
    ctx.log(
      `  old way: longest gap ${old.run.gapMs.toFixed(0)} ms, restore ${seconds(old.run.totalMs)}`,
    );
  }
  return { ...meta.finish(), pgkeep, oldWay, probeIntervalMs: PROBE_INTERVAL_MS };
}
