import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import {
  COUNTING_SESSION_SETTINGS,
  clientConfig,
  countRows,
  listUserTables,
  parseDatabaseUrl,
  type SessionSettings,
  sessionOptions,
} from '@pgkeep/pg';
import pg from 'pg';
import { rowCountsDuringLoad } from '../../packages/engine/src/row-counts-during-load.js';
import { dropDatabase, serverUrl, toolEnv, withClient } from '../lib/db.js';

/**
 * What a restore's row counts cost the load they run beside: `pg_restore -j 2` of one archive
 * (pg_dump -Fc -Z0 of --db) into fresh databases with pgkeep's load settings, alone, with each
 * table counted as soon as pg_restore reports it loaded on a session of the server's own
 * settings (a parallel count for a large table, JIT), the same on a counting session
 * (COUNTING_SESSION_SETTINGS), and every table counted on a counting session after the load. Wall time from createdb to the last count, and the CPU the whole
 * machine used (/proc/stat); variants take turns, in reverse order every other round; medians:
 *   npx tsx bench/experiments/restore-counts.ts --db pgkeep_bench_s0_3 --runs 4
 */
const { values } = parseArgs({
  options: { db: { type: 'string' }, runs: { type: 'string', default: '4' } },
});
if (!values.db) throw new Error('--db is required');
const source = values.db;
const runs = Number(values.runs);
const LOAD = {
  synchronous_commit: 'off',
  maintenance_work_mem: '256MB',
  max_parallel_maintenance_workers: '0',
};

async function machineBusyMs(): Promise<number> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '';
  const [, user, nice, system, , , irq, softirq] = line.trim().split(/\s+/).map(Number);
  return ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0)) * 10;
}

const dir = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-restore-counts-'));
const archive = path.join(dir, 'dump');
await new Promise<void>((resolve, reject) => {
  const dump = spawn('pg_dump', ['-Fc', '-Z0', '-f', archive], {
    env: toolEnv(source),
    stdio: 'inherit',
  });
  dump.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`pg_dump exit ${code}`))));
});
const rowCounts = await withClient(serverUrl(source), async (client) =>
  countRows(client, await listUserTables(client)),
);

async function load(round: number, counting: SessionSettings | null, after = false) {
  const database = `pgkeep_restore_counts_${process.pid}_${round}`;
  const busy0 = await machineBusyMs();
  const t0 = performance.now();
  await withClient(serverUrl('postgres'), (client) =>
    client.query(`CREATE DATABASE ${database} TEMPLATE template0`),
  );
  const target = parseDatabaseUrl(serverUrl(database));
  const counts =
    counting && !after
      ? await rowCountsDuringLoad(
          async () => {
            const client = new pg.Client(clientConfig(target, 'pgkeep-experiment', counting));
            await client.connect();
            return client;
          },
          { format: 'custom', rowCounts },
          archive,
          { debug: () => {} },
        )
      : null;
  const restore = spawn(
    'pg_restore',
    ['-v', '-j', '2', '--exit-on-error', '-d', database, archive],
    {
      env: { ...toolEnv(database), PGOPTIONS: sessionOptions(LOAD) },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  const lines = createInterface({ input: restore.stderr });
  lines.on('line', (line) => {
    const found = /^pg_restore: finished item (\d+) /.exec(line);
    if (found && counts) counts.itemFinished(Number(found[1]));
  });
  const code = await new Promise((resolve) => restore.on('close', resolve));
  if (code !== 0) throw new Error(`pg_restore exit ${code}`);
  if (counting && after) {
    const client = new pg.Client(clientConfig(target, 'pgkeep-experiment', counting));
    await client.connect();
    const found = await countRows(client, await listUserTables(client));
    await client.end();
    for (const [table, rows] of Object.entries(rowCounts)) {
      if (found[table] !== rows) throw new Error(`${table}: ${found[table]} rows, not ${rows}`);
    }
  }
  if (counts) {
    const checked = await counts.check();
    await counts.close();
    if (checked.mismatches.length > 0) throw new Error(checked.mismatches.join('; '));
  }
  const wall = performance.now() - t0;
  const cpu = (await machineBusyMs()) - busy0;
  await dropDatabase(database);
  return { wall, cpu };
}

const variants: [string, SessionSettings | null, boolean][] = [
  ['pg_restore -j 2 alone', null, false],
  ["+ counts during the load, server's settings", {}, false],
  ['+ counts during the load, counting session', COUNTING_SESSION_SETTINGS, false],
  ['+ counts after the load, counting session', COUNTING_SESSION_SETTINGS, true],
];
const samples = new Map<string, { wall: number[]; cpu: number[] }>();
for (let round = 0; round < runs; round++) {
  const order = round % 2 === 0 ? variants : [...variants].reverse();
  for (const [name, settings, after] of order) {
    await withClient(serverUrl('postgres'), (client) => client.query('CHECKPOINT'));
    const result = await load(round, settings, after);
    const entry = samples.get(name) ?? { wall: [], cpu: [] };
    entry.wall.push(result.wall);
    entry.cpu.push(result.cpu);
    samples.set(name, entry);
    process.stderr.write(
      `round ${round + 1} ${name}: ${result.wall.toFixed(0)} ms wall, ${result.cpu} ms CPU\n`,
    );
  }
}
await rm(dir, { recursive: true, force: true });
const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
};
const base = samples.get(variants[0]?.[0] ?? '');
const lines = [
  `Archive of ${source}, ${runs} runs in turns, medians (whole machine's CPU).`,
  '',
  '| run | wall | ÷ alone | machine CPU | CPU over alone |',
  '| --- | --- | --- | --- | --- |',
];
for (const [name] of variants) {
  const entry = samples.get(name);
  if (!entry || !base) continue;
  const wall = median(entry.wall);
  const cpu = median(entry.cpu);
  lines.push(
    `| ${name} | ${(wall / 1000).toFixed(2)} s | ${(wall / median(base.wall)).toFixed(2)}× | ${(cpu / 1000).toFixed(2)} s | ${((cpu - median(base.cpu)) / 1000).toFixed(2)} s |`,
  );
}
process.stdout.write(`${lines.join('\n')}\n`);
