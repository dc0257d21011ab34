import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Duplex, type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { toolEnv } from './lib/db.js';
import { runPipeline } from './lib/tools.js';
import { median } from './lib/util.js';

/**
 * Profiling aid for sections 1 and 2: what it costs to route the data through Node, as
 * pgkeep's backup and restore do, against letting the tools read and write it themselves.
 * No queue, locks or manifest: only the data path.
 *   A  `pg_dump -Fc -Z0 | zstd -3 -T2 > file` (the raw baseline)
 *   B  pgkeep's backup path: pg_dump → Node (count) → zstd → Node (sha256, count) → file, fsync
 *   C  pg_dump | zstd as a kernel pipe → Node (sha256, count) → file, fsync
 *   D  pgkeep's restore scratch file: artifact → Node → zstd -d → Node → file
 *   E  `zstd -d -o file artifact` (zstd reads and writes the files itself)
 * Alternating, medians, with the CPU time this process used.
 *   npx tsx bench/backup-datapath.ts --db pgkeep_bench_s1 --runs 3
 */
const { values } = parseArgs({
  options: { db: { type: 'string' }, runs: { type: 'string', default: '3' } },
});
if (!values.db) throw new Error('--db is required');
const database = values.db;
const env = toolEnv(database);

const exited = (child: ReturnType<typeof spawn>) =>
  new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`exit ${code}`))));
  });

async function hashedFile(source: Readable, file: string, extra: Duplex[] = []) {
  const hash = createHash('sha256');
  let bytes = 0;
  const measure = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      bytes += chunk.length;
      callback(null, chunk);
    },
  });
  const handle = await open(file, 'wx', 0o600);
  const out = createWriteStream('', { fd: handle.fd, autoClose: false });
  await pipeline([source, ...extra, measure, out]);
  await handle.sync();
  await handle.close();
  return { bytes, sha256: hash.digest('hex') };
}

async function viaNode(file: string) {
  const dump = spawn('pg_dump', ['-Fc', '-Z0', database], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const zstd = spawn('zstd', ['-3', '-T0', '-q', '-c'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let read = 0;
  const count = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      read += chunk.length;
      callback(null, chunk);
    },
  });
  const compressor = Duplex.from({
    writable: zstd.stdin as NodeJS.WritableStream,
    readable: zstd.stdout as NodeJS.ReadableStream,
  });
  await Promise.all([
    hashedFile(dump.stdout as Readable, file, [count, compressor]),
    exited(dump),
    exited(zstd),
  ]);
  return read;
}

async function kernelPipeThenNode(file: string) {
  const dump = spawn('pg_dump', ['-Fc', '-Z0', database], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const zstd = spawn('zstd', ['-3', '-T0', '-q', '-c'], {
    env,
    stdio: [dump.stdout as NodeJS.ReadableStream & { fd?: number }, 'pipe', 'pipe'] as never,
  });
  dump.stdout?.destroy();
  await Promise.all([hashedFile(zstd.stdout as Readable, file), exited(dump), exited(zstd)]);
}

const dir = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-datapath-'));
const variants = {
  A: {
    label: 'A kernel pipe, zstd writes the file (raw baseline)',
    ms: [] as number[],
    cpu: [] as number[],
  },
  B: {
    label: "B pgkeep's path: both streams through Node",
    ms: [] as number[],
    cpu: [] as number[],
  },
  C: {
    label: 'C kernel pipe, only zstd output through Node',
    ms: [] as number[],
    cpu: [] as number[],
  },
};
try {
  for (let round = 1; round <= Number(values.runs); round += 1) {
    for (const key of ['A', 'B', 'C'] as const) {
      const file = path.join(dir, `out-${key}.zst`);
      await rm(file, { force: true });
      const cpu = process.cpuUsage();
      const started = performance.now();
      if (key === 'A') {
        await runPipeline(
          [
            { command: 'pg_dump', args: ['-Fc', '-Z0', database] },
            { command: 'zstd', args: ['-3', '-T2', '-q', '-c'] },
          ],
          { env, stdoutFile: file },
        );
      } else if (key === 'B') {
        await viaNode(file);
      } else {
        await kernelPipeThenNode(file);
      }
      const ms = performance.now() - started;
      const used = process.cpuUsage(cpu);
      variants[key].ms.push(ms);
      variants[key].cpu.push((used.user + used.system) / 1000);
      process.stdout.write(
        `${variants[key].label}: ${(ms / 1000).toFixed(2)} s, ${((used.user + used.system) / 1e6).toFixed(2)} s CPU in Node, ${((await stat(file)).size / 1e6).toFixed(1)} MB\n`,
      );
      await rm(file, { force: true });
    }
  }
  // The restore side: decompressing an artifact into a seekable scratch file.
  const artifact = path.join(dir, 'artifact.zst');
  await runPipeline(
    [
      { command: 'pg_dump', args: ['-Fc', '-Z0', database] },
      { command: 'zstd', args: ['-3', '-T2', '-q', '-c'] },
    ],
    { env, stdoutFile: artifact },
  );
  const restoreVariants = {
    D: {
      label: "D pgkeep's scratch file: artifact → Node → zstd -d → Node → file",
      ms: [] as number[],
      cpu: [] as number[],
    },
    E: { label: 'E zstd -d -o file artifact', ms: [] as number[], cpu: [] as number[] },
  };
  for (let round = 1; round <= Number(values.runs); round += 1) {
    for (const key of ['D', 'E'] as const) {
      const file = path.join(dir, `scratch-${key}.dump`);
      const cpu = process.cpuUsage();
      const started = performance.now();
      if (key === 'D') {
        const zstd = spawn('zstd', ['-d', '-c', '-q'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
        const stage = Duplex.from({
          writable: zstd.stdin as NodeJS.WritableStream,
          readable: zstd.stdout as NodeJS.ReadableStream,
        });
        await Promise.all([
          pipeline(createReadStream(artifact), stage, createWriteStream(file, { mode: 0o600 })),
          exited(zstd),
        ]);
      } else {
        await runPipeline([{ command: 'zstd', args: ['-d', '-q', '-f', '-o', file, artifact] }], {
          env,
        });
      }
      const ms = performance.now() - started;
      const used = process.cpuUsage(cpu);
      restoreVariants[key].ms.push(ms);
      restoreVariants[key].cpu.push((used.user + used.system) / 1000);
      process.stdout.write(
        `${restoreVariants[key].label}: ${(ms / 1000).toFixed(2)} s, ${((used.user + used.system) / 1e6).toFixed(2)} s CPU in Node\n`,
      );
      await rm(file, { force: true });
    }
  }
  process.stdout.write('\nmedians:\n');
  const report = (group: Record<string, { label: string; ms: number[]; cpu: number[] }>) => {
    const base = median(Object.values(group)[0]?.ms ?? []);
    for (const variant of Object.values(group)) {
      process.stdout.write(
        `  ${variant.label}: ${(median(variant.ms) / 1000).toFixed(2)} s (${(median(variant.ms) / base).toFixed(2)}× the first), Node CPU ${(median(variant.cpu) / 1000).toFixed(2)} s\n`,
      );
    }
  };
  report(variants);
  report(restoreVariants);
} finally {
  await rm(dir, { recursive: true, force: true });
}
