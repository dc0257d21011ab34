/**
 * The data path a backup's row counts could take, side by side in turns (wall time of each run,
 * and this process's CPU): zstd reading pg_dump's pipe with count(*) in the dump's snapshot
 * beside it, against pg_dump's archive read by this process (with and without stdbuf's 1 MB
 * blocks) and its rows counted from the COPY data on the way to zstd's stdin:
 *   npx tsx bench/experiments/row-count-path.ts pgkeep_bench_s0_3
 */
import { spawn } from 'node:child_process';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CustomArchiveRowCounter, countRows, listUserTables } from '@pgkeep/pg';
import pg from 'pg';

const env = {
  ...process.env,
  PGHOST: '127.0.0.1',
  PGUSER: 'postgres',
  PGDATABASE: process.argv[2] ?? 'pgkeep_bench_s0_3',
};
async function old() {
  const client = new pg.Client({ host: '127.0.0.1', user: 'postgres', database: env.PGDATABASE });
  await client.connect();
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  const snap = (await client.query('SELECT pg_export_snapshot() AS s')).rows[0].s;
  const dump = spawn('pg_dump', ['-Fc', '-Z0', `--snapshot=${snap}`], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const z = spawn('zstd', ['-3', '-T0', '-q', '-c'], { stdio: [dump.stdout, 'ignore', 'inherit'] });
  const counting = countRows(client, await listUserTables(client));
  await new Promise((r) => z.on('close', r));
  await counting;
  await client.end();
}
async function viaNode(buffered: boolean) {
  const cmd = buffered ? ['stdbuf', '-o1M', 'pg_dump'] : ['pg_dump'];
  const dump = spawn(cmd[0] as string, [...cmd.slice(1), '-Fc', '-Z0'], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const z = spawn('zstd', ['-3', '-T0', '-q', '-c'], { stdio: ['pipe', 'ignore', 'inherit'] });
  const counter = new CustomArchiveRowCounter();
  await pipeline(
    dump.stdout,
    new Transform({
      transform(c: Buffer, _e, cb) {
        counter.push(c);
        cb(null, c);
      },
    }),
    z.stdin,
  );
  await new Promise((r) => z.on('close', r));
  if (!counter.result().ok) throw new Error('count failed');
}
const variants: [string, () => Promise<void>][] = [
  ['old: zstd reads pg_dump, count(*) beside', old],
  ['new: node counter + stdbuf', () => viaNode(true)],
  ['new: node counter, no stdbuf', () => viaNode(false)],
];
const res: Record<string, number[]> = {};
for (let round = 0; round < 4; round++) {
  for (const [name, fn] of round % 2 ? [...variants].reverse() : variants) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await fn();
    const c = process.cpuUsage(c0);
    const runs = res[name] ?? [];
    runs.push(performance.now() - t0);
    res[name] = runs;
    console.log(
      round,
      name,
      'wall',
      Math.round(performance.now() - t0),
      'node cpu',
      Math.round((c.user + c.system) / 1000),
    );
  }
}
for (const [k, v] of Object.entries(res))
  console.log(k, 'median', Math.round([...v].sort((a, b) => a - b)[2] ?? 0));
