import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { BaseBackupManifest } from '@pgkeep/core';
import pg from 'pg';
import { startTestCluster, type TestCluster } from '../../test/support/pg-cluster.js';
import { datasetCounts, generateDataset } from '../generate-dataset.js';
import { type BenchContext, megabytes, seconds, sectionMeta } from '../lib/context.js';
import { loadAverage } from '../lib/machine.js';
import { PanelWriter, pacedWrites, walWritten, writeWalVolume } from '../lib/panel-writes.js';
import { type PgkeepStack, startPgkeep } from '../lib/pgkeep.js';
import { ArchiveView, archivedBytes } from '../lib/pitr-archive.js';
import type { PitrPgkeepRun, PitrRawRun, PitrSection } from '../lib/results.js';
import { nodeStartTime, pgkeepRestore, pitrView, until } from './pitr-pgkeep.js';
import { rawPitrRestore } from './pitr-raw.js';

/** The server and target of the targets file; the dataset's database on the dedicated cluster. */
const SERVER = 'bench';
const TARGET = 'panel';
const DATABASE = 'panel';
const SWITCH_WAL_SECONDS = 10;
/** The dedicated cluster's settings over initdb's (and the test cluster's own). */
const CLUSTER_SETTINGS = { shared_buffers: '128MB', max_connections: '50' };
/** The paced load: the panel's messages arriving, a few changing status. */
const LOAD = { rowsPerSecond: 200, updatesPerTick: 2, tickMs: 100 };
/** The unpaced writes: the same shape, two writers back to back, commits not waiting for the disk. */
const MORE = { minutes: 15, writers: 2, rows: 20, updates: 2 };
/** Rows written after the point in time: a restore to it must hold none of them. */
const AFTER_POINT_BATCHES = 5;

export interface PitrOptions {
  scale: number;
  loadSeconds: number;
  runs: number;
}

type PitrContext = Pick<BenchContext, 'workDir' | 'log' | 'code' | 'cleanups'>;

function urlOf(cluster: TestCluster, database: string): string {
  const url = new URL(cluster.url);
  url.pathname = `/${encodeURIComponent(database)}`;
  return url.toString();
}

function targetsFile(cluster: TestCluster): string {
  return `${JSON.stringify(
    {
      servers: {
        [SERVER]: {
          url: cluster.url,
          pitr: {
            baseBackupSchedule: 'off',
            cleanupSchedule: 'off',
            checkpoint: 'fast',
            switchWalSeconds: SWITCH_WAL_SECONDS,
          },
        },
      },
      targets: {
        [TARGET]: {
          server: SERVER,
          database: DATABASE,
          schedules: { backup: 'off', cleanup: 'off', verify: 'off' },
        },
      },
    },
    null,
    2,
  )}\n`;
}

async function one<R extends pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []) {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  try {
    const row = (await client.query<R>(sql, params)).rows[0];
    if (!row) throw new Error(`no row from ${sql}`);
    return row;
  } finally {
    await client.end().catch(() => {});
  }
}

/** What the database holds: all rows, and the rows written after the point in time. */
async function rowsOf(url: string) {
  const row = await one<{ all: string; after: string; max: string }>(
    url,
    `SELECT count(*)::text AS all, max(id)::text AS max,
            count(*) FILTER (WHERE metadata->>'phase' = 'after-point')::text AS after
     FROM "WhatsappMessage"`,
  );
  return { all: Number(row.all), after: Number(row.after), maxId: row.max };
}

/**
 * Section 8. Point-in-time recovery of a ~1 GB panel database on a cluster of the section's own:
 * a base backup through the API, a paced write load (what the archive takes per minute, its
 * lag), more WAL up to MORE.minutes of that load, then a restore of the database to a point in
 * time through pgkeep and the same restore by hand with the raw tools, each checked to hold
 * exactly the rows written up to that time.
 */
export async function benchPitr(ctx: PitrContext, options: PitrOptions): Promise<PitrSection> {
  const meta = sectionMeta(options.runs, ctx.code);
  const dir = path.join(ctx.workDir, 'pitr');
  await mkdir(dir, { recursive: true });
  // The temporary instances run as the postgres OS user: it must be able to enter this.
  const scratchRoot = await mkdtemp('/tmp/pgkeep-bench-pitr-');
  await chmod(scratchRoot, 0o711);
  let cluster: TestCluster | undefined;
  let stack: PgkeepStack | undefined;
  const writers: PanelWriter[] = [];
  let closeControl = async () => {};
  const stop = async () => {
    await Promise.all(writers.map((writer) => writer.end()));
    await closeControl();
    await stack?.stop();
    stack = undefined;
    await cluster?.stop();
    cluster = undefined;
    await rm(scratchRoot, { recursive: true, force: true });
  };
  ctx.cleanups?.add(stop);
  try {
    cluster = await startTestCluster({ settings: CLUSTER_SETTINGS });
    const live = cluster;
    const url = urlOf(live, DATABASE);
    ctx.log(`  cluster on port ${live.port} (${live.dir})`);
    const dataset = await generateDataset(DATABASE, options.scale, {
      log: (line) => ctx.log(`  ${line}`),
      url: (database) => urlOf(live, database),
    });

    const file = path.join(dir, 'targets.json');
    await writeFile(file, targetsFile(live));
    stack = await startPgkeep({
      database: DATABASE,
      workDir: dir,
      logLevel: 'info',
      env: {
        DATABASE_URL: url,
        TARGETS_FILE: file,
        PITR_SCRATCH_DIR: scratchRoot,
        PITR_STATUS_INTERVAL_MS: '1000',
      },
    });
    const pgkeep = stack;
    ctx.log(`  pgkeep up (worker pid ${pgkeep.worker.pid})`);
    const archive = new ArchiveView(pgkeep.backupDir, SERVER);

    const control = new pg.Client({ connectionString: url, application_name: 'bench-pitr' });
    control.on('error', () => {});
    await control.connect();
    closeControl = () => control.end().catch(() => {});
    const beforeBase = await walWritten(control);
    const baseStarted = Date.now();
    const baseJob = await pgkeep.enqueue(`/api/targets/${TARGET}/pitr/basebackups`, {
      checkpoint: 'fast',
      verify: false,
    });
    const base = (await pgkeep.waitForJob(baseJob, { intervalMs: 200 }))
      .result as unknown as BaseBackupManifest;
    const baseMs = Date.now() - baseStarted;
    const artifact = path.join(archive.root, base.filename);
    await stat(artifact);
    ctx.log(
      `  base backup ${base.id}: ${seconds(baseMs)}, ${megabytes(base.size)} (tar ${megabytes(base.tarSize)})`,
    );
    await until('the recoverable window', async () =>
      (await pitrView(pgkeep, TARGET)).from ? true : undefined,
    );

    // The paced load, and what the archive got meanwhile.
    const writer = await PanelWriter.connect(url, datasetCounts(options.scale).users, 0);
    writers.push(writer);
    const loadFrom = await walWritten(control, writers);
    const loadStarted = new Date();
    ctx.log(`  load: ${LOAD.rowsPerSecond} rows/s for ${options.loadSeconds} s`);
    const paced = await pacedWrites(writer, {
      seconds: options.loadSeconds,
      ...LOAD,
      phase: 'load',
    });
    const loadEnded = new Date();
    const loadWal = (await walWritten(control, writers)) - loadFrom;
    const lagSeconds = (await pitrView(pgkeep, TARGET)).lagSeconds;
    const during = (await archive.segments()).filter((entry) => {
      const at = Date.parse(entry.archivedAt);
      return at >= loadStarted.getTime() && at <= loadEnded.getTime();
    });
    const load: PitrSection['load'] = {
      seconds: options.loadSeconds,
      ...LOAD,
      ...paced,
      walBytes: loadWal,
      archived: archivedBytes(during),
      lagSeconds,
    };
    const perMinute = (bytes: number) => (bytes / paced.ms) * 60_000;
    ctx.log(
      `  load: ${paced.rows} rows, ${paced.updates} updates, ${paced.lateTicks} late ticks; WAL ${megabytes(perMinute(loadWal))}/min, archived ${megabytes(perMinute(load.archived.walBytes))}/min (stored ${megabytes(perMinute(load.archived.storedBytes))}/min), lag ${lagSeconds} s`,
    );

    // More WAL, as fast as it goes, up to MORE.minutes of the load's, in as many segments.
    const targetWalBytes = Math.round(perMinute(loadWal) * MORE.minutes);
    const bytesPerSwitch = Math.min(
      base.walSegmentSize,
      Math.round((loadWal / paced.ms) * SWITCH_WAL_SECONDS * 1000),
    );
    for (let i = 1; i < MORE.writers; i += 1) {
      writers.push(
        await PanelWriter.connect(url, datasetCounts(options.scale).users, i * 1_000_000_000),
      );
    }
    // As fast as it goes: no commit waits for the disk (the WAL itself is the same).
    for (const each of writers) await each.synchronousCommit(false);
    const written = await writeWalVolume(control, writers, {
      ...MORE,
      targetBytes: targetWalBytes,
      bytesPerSwitch,
      phase: 'more',
    });
    const more: PitrSection['more'] = {
      ...written,
      minutes: MORE.minutes,
      targetWalBytes,
      bytesPerSwitch,
      writers: MORE.writers,
    };
    ctx.log(
      `  more: ${megabytes(more.walBytes)} of WAL in ${seconds(more.ms)} (${more.rows} rows, ${more.updates} updates, ${more.switches} switches)`,
    );

    // The point in time: after a last known write, by the server's clock; then writes after it.
    await writer.synchronousCommit(true);
    await writer.batch(20, 0, 'before-point');
    const atPoint = await rowsOf(url);
    const pointInTime = (
      await one<{ at: string }>(
        url,
        `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at`,
      )
    ).at;
    for (let i = 0; i < AFTER_POINT_BATCHES; i += 1) await writer.batch(10, 2, 'after-point');
    const afterPoint = await rowsOf(url);
    const last = (
      await one<{ name: string }>(url, 'SELECT pg_walfile_name(pg_switch_wal()) AS name')
    ).name;
    await archive.waitFor(last);
    await until('the window to reach the point in time', async () => {
      const to = (await pitrView(pgkeep, TARGET)).to;
      return to && Date.parse(to) >= Date.parse(pointInTime) ? true : undefined;
    });
    const needed = (await archive.segments()).filter(
      (entry) => entry.name >= base.startSegment && entry.name <= last,
    );
    const walUsed = {
      ...archivedBytes(needed),
      writtenBytes: (await walWritten(control, writers)) - beforeBase,
    };
    ctx.log(
      `  point in time ${pointInTime}: ${atPoint.all} rows (${afterPoint.all - atPoint.all} after it); ${walUsed.segments} segments from the base backup, ${megabytes(walUsed.walBytes)} of segments (${megabytes(walUsed.writtenBytes)} of WAL written), ${megabytes(walUsed.storedBytes)} stored`,
    );

    const check = async (who: string) => {
      const restored = await rowsOf(url);
      if (
        restored.all !== atPoint.all ||
        restored.maxId !== atPoint.maxId ||
        restored.after !== 0
      ) {
        throw new Error(
          `${who}: the restored database holds ${restored.all} rows (max id ${restored.maxId}, ${restored.after} after the point), not the ${atPoint.all} (max id ${atPoint.maxId}) written up to it`,
        );
      }
    };
    const pgkeepRuns: PitrPgkeepRun[] = [];
    const rawRuns: PitrRawRun[] = [];
    const dropDatabase = async (name: string) => {
      await live.query(`DROP DATABASE IF EXISTS "${name.replaceAll('"', '""')}" WITH (FORCE)`);
    };
    for (let round = 1; round <= options.runs; round += 1) {
      ctx.log(` round ${round}/${options.runs}`);
      const run = await pgkeepRestore(pgkeep, TARGET, DATABASE, pointInTime);
      await check('pgkeep');
      if (run.previousDatabase) await dropDatabase(run.previousDatabase);
      pgkeepRuns.push(run.run);
      ctx.log(
        `  pgkeep: ${seconds(run.run.totalMs)} (fetch ${seconds(run.run.phases.fetchMs)}, recovery ${seconds(run.run.phases.recoveryMs)}, dump ${seconds(run.run.phases.dumpMs)}, restore ${seconds(run.run.phases.restoreMs)}, downtime ${run.run.downtimeMs} ms; ${run.run.walFilesFetched} WAL files)`,
      );
      const load1 = loadAverage()[0] ?? 0;
      const raw = await rawPitrRestore({
        artifact,
        segments: needed.map((entry) => ({
          name: entry.name,
          file: archive.fileOf(entry),
          walSize: entry.walSize,
        })),
        pointInTime,
        database: DATABASE,
        live: { host: '127.0.0.1', port: live.port, user: 'postgres' },
        scratchRoot,
      });
      await check('by hand');
      await dropDatabase(raw.old);
      const { old: _old, ...rawRun } = raw;
      rawRuns.push({ ...rawRun, load: load1 });
      ctx.log(
        `  by hand: ${seconds(raw.totalMs)} (${Object.entries(raw.steps)
          .map(([step, ms]) => `${step.replace(/Ms$/, '')} ${seconds(ms)}`)
          .join(', ')})`,
      );
    }
    const nodeStartMs = await nodeStartTime();
    ctx.log(
      `  node -e 0 (the restore_command's interpreter) starts in ${nodeStartMs.toFixed(0)} ms`,
    );
    return {
      ...meta.finish(),
      nodeStartMs,
      dataset: {
        database: DATABASE,
        scale: options.scale,
        sizeBytes: dataset.sizeBytes,
        counts: { ...dataset.counts },
        generatedMs: dataset.generatedMs,
      },
      clusterSettings: CLUSTER_SETTINGS,
      switchWalSeconds: SWITCH_WAL_SECONDS,
      baseBackup: { ms: baseMs, size: base.size, tarSize: base.tarSize },
      load,
      more,
      pointInTime,
      rowsAtPoint: atPoint.all,
      rowsAfterPoint: afterPoint.all - atPoint.all,
      walUsed,
      pgkeep: pgkeepRuns,
      raw: rawRuns,
    };
  } finally {
    await stop();
    ctx.cleanups?.delete(stop);
    await rm(dir, { recursive: true, force: true });
  }
}
