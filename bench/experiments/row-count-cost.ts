import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { CustomArchiveRowCounter, countRows, listUserTables } from '@pgkeep/pg';
import { toolEnv, withClient } from '../lib/db.js';

/**
 * What a backup's exact row counts cost, both ways, on one database:
 * - count(*) of every table in a REPEATABLE READ snapshot (what a backup ran beside pg_dump
 *   before): wall time, and the CPU of the server backend that ran it (/proc/<pid>/stat);
 * - reading pg_dump's archive in this process on its way to the compressor (what a backup does
 *   now): this process's CPU with the row counter, and without it (the pass-through alone).
 * Runs take turns; medians:
 *   npx tsx bench/experiments/row-count-cost.ts --db pgkeep_bench_s0_3 --runs 3
 */
const { values } = parseArgs({
  options: { db: { type: 'string' }, runs: { type: 'string', default: '3' } },
});
if (!values.db) throw new Error('--db is required');
const database = values.db;
const runs = Number(values.runs);
const url = `postgres://postgres@127.0.0.1:5432/${database}`;
const TICKS = 100; // USER_HZ

async function backendCpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS;
}

async function countStar() {
  return withClient(url, async (client) => {
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const pid = rows[0]?.pid as number;
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const tables = await listUserTables(client);
    const cpu0 = await backendCpuMs(pid);
    const t0 = performance.now();
    const counts = await countRows(client, tables);
    const wall = performance.now() - t0;
    const cpu = (await backendCpuMs(pid)) - cpu0;
    await client.query('COMMIT');
    return { wall, cpu, rows: Object.values(counts).reduce((a, b) => a + b, 0) };
  });
}

async function readArchive(withCounter: boolean) {
  const child = spawn('pg_dump', ['-Fc', '-Z0', '--no-password'], {
    env: toolEnv(database),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  // The bytes go on into a pipe, as a backup's go on into zstd's stdin.
  const sink = spawn('cat', [], { stdio: ['pipe', 'ignore', 'inherit'] });
  const counter = withCounter ? new CustomArchiveRowCounter() : null;
  let bytes = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await pipeline(
    child.stdout,
    new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        bytes += chunk.length;
        counter?.push(chunk);
        callback(null, chunk);
      },
    }),
    sink.stdin,
  );
  const wall = performance.now() - t0;
  const used = process.cpuUsage(cpu0);
  const result = counter?.result();
  let rows = 0;
  if (result?.ok) for (const entry of result.rows.values()) rows += entry.rows;
  return { wall, cpu: (used.user + used.system) / 1000, bytes, rows };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const samples = {
  star: [] as number[],
  starWall: [] as number[],
  pass: [] as number[],
  count: [] as number[],
};
let bytes = 0;
let rowsStar = 0;
let rowsCounted = 0;
for (let i = 0; i < runs; i++) {
  const star = await countStar();
  samples.star.push(star.cpu);
  samples.starWall.push(star.wall);
  rowsStar = star.rows;
  const pass = await readArchive(false);
  samples.pass.push(pass.cpu);
  bytes = pass.bytes;
  const count = await readArchive(true);
  samples.count.push(count.cpu);
  rowsCounted = count.rows;
  process.stderr.write(
    `round ${i + 1}: count(*) ${star.cpu.toFixed(0)} ms CPU (${star.wall.toFixed(0)} ms wall); archive read ${pass.cpu.toFixed(0)} ms CPU, with counter ${count.cpu.toFixed(0)} ms\n`,
  );
}
const gb = bytes / 1e9;
const line = (label: string, ms: number) =>
  `| ${label} | ${ms.toFixed(0)} ms | ${(ms / 1000 / gb).toFixed(2)} s |`;
process.stdout.write(
  [
    `Database ${database}: archive ${(bytes / 1e6).toFixed(1)} MB, ${rowsStar.toLocaleString('en-US')} rows by count(*), ${rowsCounted.toLocaleString('en-US')} counted from the archive; ${runs} runs, medians.`,
    '',
    '| CPU of | per run | per GB of archive |',
    '| --- | --- | --- |',
    line(
      `count(*) of every table, server backend (wall ${median(samples.starWall).toFixed(0)} ms)`,
      median(samples.star),
    ),
    line('this process passing the archive on to a pipe, no counter', median(samples.pass)),
    line('the same with the row counter', median(samples.count)),
    line('the row counter alone (difference)', median(samples.count) - median(samples.pass)),
    '',
  ].join('\n'),
);
process.exit(0);
