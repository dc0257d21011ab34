import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs, promisify } from 'node:util';
import { dropDatabase, serverUrl, toolEnv, withClient } from '../lib/db.js';

/**
 * The same `pg_restore -j 2` of one archive into fresh databases under each set of session
 * settings (PGOPTIONS) a restore's temporary database might load with; variants take turns,
 * in a rotated order each round, so a busy spell of a shared machine spreads over all of them.
 * Besides the wall time, what the settings act on, measured in the restore's own sessions
 * alone: the share of their active samples (pg_stat_activity every 20 ms) spent waiting on a
 * WAL write or flush, and the temporary file bytes their sorts wrote (pg_stat_database):
 *   npx tsx bench/experiments/restore-load-settings.ts --db pgkeep_bench_s0_1 --runs 4
 */
const { values } = parseArgs({
  options: {
    db: { type: 'string' },
    runs: { type: 'string', default: '4' },
    jobs: { type: 'string', default: '2' },
  },
});
if (!values.db) throw new Error('--db is required');
const run = promisify(execFile);

const base = '-c client_connection_check_interval=2000';
const variants: Record<string, string> = {
  'as before (no settings)': base,
  'synchronous_commit=off': `${base} -c synchronous_commit=off`,
  'maintenance_work_mem=256MB': `${base} -c maintenance_work_mem=256MB`,
  'both (pgkeep now)': `${base} -c synchronous_commit=off -c maintenance_work_mem=256MB`,
  'both + max_parallel_maintenance_workers=0': `${base} -c synchronous_commit=off -c maintenance_work_mem=256MB -c max_parallel_maintenance_workers=0`,
  'synchronous_commit=off + max_parallel_maintenance_workers=0': `${base} -c synchronous_commit=off -c max_parallel_maintenance_workers=0`,
};

const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};

/** Samples the target's sessions until stopped: active samples, and those waiting on WAL I/O. */
function sampleWaits(database: string) {
  let stop = false;
  const counts = { active: 0, wal: 0 };
  const done = withClient(serverUrl('postgres'), async (client) => {
    while (!stop) {
      const { rows } = await client.query<{ wait: string | null }>(
        `SELECT wait_event AS wait FROM pg_stat_activity
         WHERE datname = $1 AND state = 'active' AND pid <> pg_backend_pid()`,
        [database],
      );
      for (const row of rows) {
        counts.active += 1;
        if (row.wait === 'WALSync' || row.wait === 'WALWrite') counts.wal += 1;
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  });
  return async () => {
    stop = true;
    await done;
    return counts;
  };
}

async function tempBytes(database: string): Promise<number> {
  return withClient(serverUrl('postgres'), async (client) => {
    const { rows } = await client.query<{ bytes: string }>(
      'SELECT temp_bytes::text AS bytes FROM pg_stat_database WHERE datname = $1',
      [database],
    );
    return Number(rows[0]?.bytes ?? 0);
  });
}

const dir = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-load-settings-'));
const archive = path.join(dir, 'archive.dump');
const target = `${values.db}_load_ab`;
try {
  await run('pg_dump', ['-Fc', '-Z0', '-f', archive, values.db], { env: toolEnv(values.db) });
  const names = Object.keys(variants);
  const times: Record<string, number[]> = Object.fromEntries(names.map((name) => [name, []]));
  const walShare: Record<string, number[]> = Object.fromEntries(names.map((name) => [name, []]));
  const tempMb: Record<string, number[]> = Object.fromEntries(names.map((name) => [name, []]));
  const rounds = Number(values.runs);
  for (let round = 0; round < rounds; round += 1) {
    const order = names.map((_, i) => names[(i + round) % names.length] as string);
    for (const name of order) {
      await dropDatabase(target);
      await run('createdb', ['-T', 'template0', target], { env: toolEnv('postgres') });
      const stopSampling = sampleWaits(target);
      const started = performance.now();
      await run(
        'pg_restore',
        ['--exit-on-error', `--jobs=${values.jobs}`, `--dbname=${target}`, archive],
        {
          env: { ...toolEnv(target), PGOPTIONS: variants[name] },
        },
      );
      const ms = performance.now() - started;
      const waits = await stopSampling();
      // Backends report their counters as they exit; pg_restore's have exited.
      const temp = (await tempBytes(target)) / 1e6;
      times[name]?.push(ms);
      walShare[name]?.push(waits.active > 0 ? waits.wal / waits.active : 0);
      tempMb[name]?.push(temp);
      process.stdout.write(
        `round ${round + 1} ${name}: ${(ms / 1000).toFixed(2)} s, WAL waits ${waits.wal}/${waits.active} samples, temp ${temp.toFixed(0)} MB (load ${os.loadavg()[0]?.toFixed(2)})\n`,
      );
    }
  }
  const reference = median(times[names[0] as string] as number[]);
  process.stdout.write(
    '\n| settings | median | runs (s) | ÷ as before | waiting on WAL I/O (share of active samples) | temp files |\n| --- | --- | --- | --- | --- | --- |\n',
  );
  for (const name of names) {
    const runs = times[name] as number[];
    process.stdout.write(
      `| ${name} | ${(median(runs) / 1000).toFixed(2)} s | ${runs.map((ms) => (ms / 1000).toFixed(2)).join(' / ')} | ${(median(runs) / reference).toFixed(2)}× | ${(median(walShare[name] as number[]) * 100).toFixed(0)} % | ${median(tempMb[name] as number[]).toFixed(0)} MB |\n`,
    );
  }
} finally {
  await dropDatabase(target).catch(() => {});
  await rm(dir, { recursive: true, force: true });
}
