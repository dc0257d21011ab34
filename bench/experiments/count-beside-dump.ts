import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import {
  COUNTING_SESSION_SETTINGS,
  clientConfig,
  countRows,
  listUserTables,
  parseDatabaseUrl,
  type SessionSettings,
} from '@pgkeep/pg';
import pg from 'pg';
import { toolEnv } from '../lib/db.js';

/**
 * What the exact row counts cost a backup on the CPU it shares with pg_dump and zstd: the raw
 * pipeline `pg_dump -Fc -Z0 --snapshot | zstd -3 -T0` alone, with count(*) of every table in the
 * dump's snapshot on a session of the server's own settings (a parallel count for a large
 * table, JIT), and with count(*) on a counting session (COUNTING_SESSION_SETTINGS: one process,
 * no JIT). Wall time of each run and the CPU the whole machine used in it (/proc/stat), in
 * turns; medians:
 *   npx tsx bench/experiments/count-beside-dump.ts --db pgkeep_bench_s0_3 --runs 4
 */
const { values } = parseArgs({
  options: { db: { type: 'string' }, runs: { type: 'string', default: '4' } },
});
if (!values.db) throw new Error('--db is required');
const database = values.db;
const runs = Number(values.runs);
const target = parseDatabaseUrl(`postgres://postgres@127.0.0.1:5432/${database}`);

/** CPU-milliseconds every core has spent busy since boot (user, nice, system, irq, softirq). */
async function machineBusyMs(): Promise<number> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '';
  const [, user, nice, system, , , irq, softirq] = line.trim().split(/\s+/).map(Number);
  return ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0)) * 10;
}

async function backup(count: SessionSettings | null) {
  const client = new pg.Client(clientConfig(target, 'pgkeep-experiment', count ?? {}));
  await client.connect();
  const busy0 = await machineBusyMs();
  const t0 = performance.now();
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  const { rows } = await client.query<{ s: string }>('SELECT pg_export_snapshot() AS s');
  const dump = spawn('pg_dump', ['-Fc', '-Z0', `--snapshot=${rows[0]?.s}`], {
    env: toolEnv(database),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const zstd = spawn('zstd', ['-3', '-T0', '-q', '-c'], {
    stdio: [dump.stdout, 'ignore', 'inherit'],
  });
  const done = new Promise((resolve) => zstd.on('close', resolve));
  let countedMs = 0;
  if (count) {
    await countRows(client, await listUserTables(client));
    countedMs = performance.now() - t0;
  }
  await done;
  const wall = performance.now() - t0;
  const cpu = (await machineBusyMs()) - busy0;
  await client.end();
  return { wall, cpu, countedMs };
}

const variants: [string, SessionSettings | null][] = [
  ['pg_dump | zstd alone', null],
  ["+ count(*), server's settings", {}],
  ['+ count(*), counting session', COUNTING_SESSION_SETTINGS],
];
const samples = new Map<string, { wall: number[]; cpu: number[]; counted: number[] }>();
for (let round = 0; round < runs; round++) {
  const order = round % 2 === 0 ? variants : [...variants].reverse();
  for (const [name, settings] of order) {
    const result = await backup(settings);
    const entry = samples.get(name) ?? { wall: [], cpu: [], counted: [] };
    entry.wall.push(result.wall);
    entry.cpu.push(result.cpu);
    entry.counted.push(result.countedMs);
    samples.set(name, entry);
    process.stderr.write(
      `round ${round + 1} ${name}: ${result.wall.toFixed(0)} ms wall, ${result.cpu} ms CPU, counted at ${result.countedMs.toFixed(0)} ms\n`,
    );
  }
}
const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
};
const base = samples.get(variants[0]?.[0] ?? '');
const lines = [
  `Database ${database}, ${runs} runs in turns, medians (whole machine's CPU).`,
  '',
  '| run | wall | ÷ alone | machine CPU | CPU over alone | counts done at |',
  '| --- | --- | --- | --- | --- | --- |',
];
for (const [name] of variants) {
  const entry = samples.get(name);
  if (!entry || !base) continue;
  const wall = median(entry.wall);
  const cpu = median(entry.cpu);
  lines.push(
    `| ${name} | ${(wall / 1000).toFixed(2)} s | ${(wall / median(base.wall)).toFixed(2)}× | ${(cpu / 1000).toFixed(2)} s | ${((cpu - median(base.cpu)) / 1000).toFixed(2)} s | ${entry.counted.some((x) => x > 0) ? `${(median(entry.counted) / 1000).toFixed(2)} s` : '—'} |`,
  );
}
process.stdout.write(`${lines.join('\n')}\n`);
