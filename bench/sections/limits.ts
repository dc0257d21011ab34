import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  type BenchContext,
  datasetTables,
  ensureArtifacts,
  fileSize,
  rawDir,
  seconds,
  sectionMeta,
} from '../lib/context.js';
import { dropDatabase, toolEnv } from '../lib/db.js';
import type { LimitKey, LimitMeasure, LimitsSection } from '../lib/results.js';
import { runPipeline } from '../lib/tools.js';

const MiB = 1024 * 1024;

/**
 * Section 9. The machine's own limits on pgkeep's paths, on this dataset, in this run:
 * - the disk where backups go: a sequential write (`dd … conv=fdatasync`: the time includes
 *   getting the bytes onto the disk) and a sequential read of that file with O_DIRECT (the page
 *   cache bypassed without dropping the machine's caches);
 * - zstd alone: `zstd -3 -T0` (pgkeep's settings) of the `pg_dump -Fc -Z0` file to /dev/null,
 *   and `zstd -d` of pgkeep's artifact to /dev/null;
 * - PostgreSQL's read rate: `pg_dump -Fc -Z0` to /dev/null, and `COPY (SELECT * FROM t) TO
 *   STDOUT` of the largest table through psql to /dev/null;
 * - PostgreSQL's load rate: `pg_restore -j 2` of the uncompressed dump file into a scratch
 *   database (`createdb` included, as in section 2), no compression in the path.
 * The disk test writes as many MiB as the dump has (64 MiB to 2 GiB), so that it measures the
 * disk rather than its cache.
 */
export async function benchLimits(ctx: BenchContext): Promise<LimitsSection> {
  await ensureArtifacts(ctx, { pgkeep: true });
  const artifact = ctx.pgkeepBackup?.file as string;
  const artifactBytes = await fileSize(artifact);
  const meta = sectionMeta(ctx.runs, ctx.code);
  const env = toolEnv(ctx.database);
  const diskDir = ctx.stack.backupDir;
  await mkdir(diskDir, { recursive: true });
  const ddFile = path.join(diskDir, 'limits-dd.bin');
  const dumpFile = path.join(rawDir(ctx), 'limits.dump');
  const scratch = `${ctx.database}_limits`;
  const ddMiB = Math.min(2048, Math.max(64, Math.round(ctx.dumpBytes / MiB)));
  const [largest] = await datasetTables(ctx.database);
  if (!largest) throw new Error(`${ctx.database} holds no table`);

  const measures: Record<LimitKey, LimitMeasure> = {
    diskWrite: {
      label: `disk, sequential write: \`dd bs=1M count=${ddMiB} conv=fdatasync\``,
      bytes: ddMiB * MiB,
      runs: [],
    },
    diskRead: {
      label: 'disk, sequential read: `dd bs=1M iflag=direct` of that file',
      bytes: ddMiB * MiB,
      runs: [],
    },
    zstdCompress: {
      label: '`zstd -3 -T0` of the `pg_dump -Fc -Z0` file → /dev/null',
      bytes: ctx.dumpBytes,
      runs: [],
      note: 'MB/s of dump bytes in',
    },
    zstdDecompress: {
      label: "`zstd -d` of pgkeep's artifact → /dev/null",
      bytes: ctx.dumpBytes,
      runs: [],
      note: 'MB/s of dump bytes out',
    },
    pgDumpRead: {
      label: '`pg_dump -Fc -Z0` → /dev/null',
      bytes: ctx.dumpBytes,
      runs: [],
      note: 'MB/s of dump bytes',
    },
    copyLargest: {
      label: `\`COPY (SELECT * FROM "${largest.name}") TO STDOUT\` through psql → /dev/null`,
      bytes: largest.bytes,
      runs: [],
      note: "MB/s of the table's size on disk (pg_table_size)",
    },
    pgRestoreLoad: {
      label: '`createdb` + `pg_restore -j 2` of the `pg_dump -Fc -Z0` file',
      bytes: ctx.dumpBytes,
      runs: [],
      note: 'MB/s of dump bytes',
    },
  };
  const record = (key: LimitKey, ms: number) => {
    const measure = measures[key];
    measure.runs.push(ms);
    ctx.log(`  ${key}: ${seconds(ms)}, ${(measure.bytes / 1e6 / (ms / 1000)).toFixed(0)} MB/s`);
  };
  const timed = async (work: () => Promise<unknown>) => {
    const started = performance.now();
    await work();
    return performance.now() - started;
  };
  const pipe = (command: string, args: string[], stdoutFile?: string) =>
    runPipeline([{ command, args }], { env, ...(stdoutFile ? { stdoutFile } : {}) });

  try {
    // The dump file the zstd and load measures read (written once, untimed).
    await pipe('pg_dump', ['-Fc', '-Z0', '-f', dumpFile, ctx.database]);
    for (let round = 1; round <= ctx.runs; round += 1) {
      ctx.log(` round ${round}/${ctx.runs}`);
      record(
        'diskWrite',
        await pipe('dd', [
          'if=/dev/zero',
          `of=${ddFile}`,
          'bs=1M',
          `count=${ddMiB}`,
          'conv=fdatasync',
          'status=none',
        ]),
      );
      try {
        record(
          'diskRead',
          await pipe('dd', [
            `if=${ddFile}`,
            'of=/dev/null',
            'bs=1M',
            'iflag=direct',
            'status=none',
          ]),
        );
      } catch (error) {
        // A file system without O_DIRECT (tmpfs): no read figure rather than the cache's.
        measures.diskRead.note = `not measured: ${String(error).slice(0, 200)}`;
      }
      await rm(ddFile, { force: true });
      record('zstdCompress', await pipe('zstd', ['-3', '-T0', '-q', '-c', dumpFile]));
      record('zstdDecompress', await pipe('zstd', ['-d', '-q', '-c', artifact]));
      record('pgDumpRead', await pipe('pg_dump', ['-Fc', '-Z0', ctx.database]));
      record(
        'copyLargest',
        await pipe('psql', [
          '-X',
          '-q',
          '-d',
          ctx.database,
          '-c',
          `COPY (SELECT * FROM "${largest.name.replaceAll('"', '""')}") TO STDOUT`,
        ]),
      );
      await dropDatabase(scratch);
      record(
        'pgRestoreLoad',
        await timed(async () => {
          await pipe('createdb', ['-T', 'template0', scratch]);
          await pipe('pg_restore', ['--exit-on-error', '-j', '2', '-d', scratch, dumpFile]);
        }),
      );
      await dropDatabase(scratch);
    }
  } finally {
    await rm(ddFile, { force: true });
    await rm(dumpFile, { force: true });
    await dropDatabase(scratch).catch(() => {});
  }
  const kept = Object.fromEntries(
    Object.entries(measures).filter(
      ([, measure]) => measure.runs.length > 0 || measure.note?.startsWith('not measured'),
    ),
  ) as LimitsSection['measures'];
  return { ...meta.finish(), diskDir, artifactBytes, measures: kept };
}
