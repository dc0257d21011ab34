import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  DATASETS,
  datasetDatabaseName,
  generateDataset,
  isDatasetKind,
} from './generate-dataset.js';
import { type BenchContext, codeVersion } from './lib/context.js';
import { dropDatabase, listDatabases, toolEnv } from './lib/db.js';
import { loadAverage, machineInfo } from './lib/machine.js';
import { type PgkeepStack, ROOT, startPgkeep } from './lib/pgkeep.js';
import type { BenchResults, ScaleResults } from './lib/results.js';
import { countOutputBytes, runTool } from './lib/tools.js';
import {
  checksTable,
  renderMarkdown,
  renderMemory,
  renderScale,
  type TargetCheck,
} from './report.js';
import { benchApi } from './sections/api.js';
import { benchBackup } from './sections/backup.js';
import { benchDowntime } from './sections/downtime.js';
import { benchLimits } from './sections/limits.js';
import { benchPitr } from './sections/pitr.js';
import { benchRestore } from './sections/restore.js';
import { benchStart } from './sections/start.js';
import { benchTargets } from './sections/targets.js';

/**
 * `npm run bench`: generates (or reuses) the dataset, starts pgkeep's API and worker as real
 * processes, runs the sections, writes bench/results.json and BENCHMARKS.md, prints the tables.
 */
/** Where --api-cpu-prof leaves the API's .cpuprofile (outside the work tree, kept). */
const API_PROFILE_DIR = path.join(os.tmpdir(), 'pgkeep-bench-profiles');
const SECTIONS = [
  'backup',
  'restore',
  'limits',
  'downtime',
  'api',
  'start',
  'targets',
  'pitr',
] as const;
type SectionName = (typeof SECTIONS)[number];

const { values } = parseArgs({
  options: {
    scale: { type: 'string', default: '0.1' },
    dataset: { type: 'string', default: 'panel' },
    runs: { type: 'string', default: '3' },
    sections: { type: 'string', default: SECTIONS.join(',') },
    db: { type: 'string' },
    'keep-dataset': { type: 'boolean', default: false },
    'start-samples': { type: 'string', default: '20' },
    'targets-databases': { type: 'string', default: '20' },
    // ≈ 1 GB on disk: scale 1 is ≈ 3 GB.
    'pitr-scale': { type: 'string', default: '0.33' },
    'pitr-load-seconds': { type: 'string', default: '60' },
    'pitr-runs': { type: 'string', default: '1' },
    'api-duration': { type: 'string', default: '5' },
    'api-connections': { type: 'string', default: '10' },
    'api-cpu-prof': { type: 'boolean', default: false },
    'api-panel-steps': { type: 'string', default: '200,400,800,1600,3200' },
    'parallel-jobs': { type: 'string', default: '0' },
    'api-panel-seconds': { type: 'string', default: '10' },
    'api-panel-p99-ms': { type: 'string', default: '100' },
    'results-file': { type: 'string', default: path.join(ROOT, 'bench/results.json') },
    'markdown-file': { type: 'string', default: path.join(ROOT, 'BENCHMARKS.md') },
    'render-only': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});

if (values.help) {
  process.stdout.write(
    [
      'npm run bench -- [--scale 0.1] [--runs 3] [--dataset panel|long-bodies|many-tables]',
      '                 [--sections backup,restore,limits,downtime,api,start,targets,pitr]',
      '                 [--keep-dataset] [--db NAME] [--start-samples 20] [--targets-databases 20]',
      '                 [--pitr-scale 0.33] [--pitr-load-seconds 60] [--pitr-runs 1]',
      '                 [--api-duration 5] [--api-connections 10] [--api-cpu-prof]',
      '                 [--api-panel-steps 200,400,800,1600,3200] [--api-panel-seconds 10]',
      "                 [--parallel-jobs 0]   (N > 0: backup also runs pgkeep's directory format with --jobs=N)",
      '                 [--api-panel-p99-ms 100]',
      'npm run bench -- --render-only   (BENCHMARKS.md again from bench/results.json)',
      '(memory is measured during backup and restore; "memory" in --sections is accepted)',
      '',
      "--dataset   panel: the panel's tables, messages of 100–300 characters (default);",
      '            long-bodies: the same tables, fewer messages of 300–900 characters (same size);',
      '            many-tables: 200 tables of four shapes, about the same size (parallel dumps).',
      '            Database pgkeep_bench_s<scale> (panel) or pgkeep_bench_<dataset>_s<scale>;',
      '            results filed under "<scale>" (panel) or "<dataset>@<scale>".',
      '--sections  limits: the disk (dd write with fdatasync, O_DIRECT read), zstd alone,',
      '            pg_dump -Z0 and COPY of the largest table to /dev/null, pg_restore -j 2 of the',
      "            uncompressed dump; BENCHMARKS.md sets pgkeep's backup and restore against them.",
      '            api: also a panel-like load (clients polling their own queued job once a',
      '            second, more clients each step until p99 > --api-panel-p99-ms or errors):',
      '            --api-panel-steps (client counts; "" skips it), --api-panel-seconds per step.',
      '',
    ].join('\n'),
  );
  process.exit(0);
}

async function loadResults(file: string): Promise<BenchResults> {
  if (!existsSync(file)) return { note: '', scales: {} };
  return JSON.parse(await readFile(file, 'utf8')) as BenchResults;
}

/** BENCHMARKS.md from the results (and bench/analysis.md), formatted as the project's Biome wants. */
async function writeMarkdown(results: BenchResults): Promise<void> {
  const analysisFile = path.join(ROOT, 'bench/analysis.md');
  const analysis = existsSync(analysisFile) ? await readFile(analysisFile, 'utf8') : null;
  const file = values['markdown-file'];
  await writeFile(file, renderMarkdown(results, analysis));
  await runTool(path.join(ROOT, 'node_modules/.bin/biome'), ['format', '--write', file], {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
  }).catch(() => {
    // Outside the project (or no Biome): the file stays as rendered.
  });
}

if (values['render-only']) {
  await writeMarkdown(await loadResults(values['results-file']));
  process.stdout.write(`wrote ${values['markdown-file']}\n`);
  process.exit(0);
}

const scale = Number(values.scale);
const runs = Number(values.runs);
if (!(scale > 0 && scale <= 10)) throw new Error('--scale must be in (0, 10]');
if (!(Number.isInteger(runs) && runs >= 1)) throw new Error('--runs must be a whole number ≥ 1');
const targetsDatabases = Number(values['targets-databases']);
if (!(Number.isInteger(targetsDatabases) && targetsDatabases >= 1 && targetsDatabases <= 99)) {
  throw new Error('--targets-databases must be a whole number from 1 to 99');
}
const pitrScale = Number(values['pitr-scale']);
const pitrLoadSeconds = Number(values['pitr-load-seconds']);
const pitrRuns = Number(values['pitr-runs']);
if (!(pitrScale > 0 && pitrScale <= 10)) throw new Error('--pitr-scale must be in (0, 10]');
if (!(Number.isInteger(pitrLoadSeconds) && pitrLoadSeconds >= 5)) {
  throw new Error('--pitr-load-seconds must be a whole number ≥ 5');
}
if (!(Number.isInteger(pitrRuns) && pitrRuns >= 1)) {
  throw new Error('--pitr-runs must be a whole number ≥ 1');
}
const panelSteps = values['api-panel-steps']
  .split(',')
  .filter((step) => step.trim() !== '')
  .map((step) => Number(step));
if (!panelSteps.every((step) => Number.isInteger(step) && step >= 1 && step <= 20_000)) {
  throw new Error('--api-panel-steps must be whole numbers from 1 to 20000, comma-separated');
}
if (!(Number(values['api-panel-seconds']) >= 2)) throw new Error('--api-panel-seconds must be ≥ 2');
if (!(Number(values['api-panel-p99-ms']) > 0)) throw new Error('--api-panel-p99-ms must be > 0');
const requested = values.sections.split(',').map((name) => name.trim());
for (const name of requested) {
  if (name !== 'memory' && !SECTIONS.includes(name as SectionName)) {
    throw new Error(`unknown section ${name} (known: ${SECTIONS.join(', ')}, memory)`);
  }
}
const selected = SECTIONS.filter(
  (name) =>
    requested.includes(name) ||
    (requested.includes('memory') && (name === 'backup' || name === 'restore')),
);
const kind = values.dataset;
if (!isDatasetKind(kind)) throw new Error(`--dataset must be one of ${DATASETS.join(', ')}`);
if (kind === 'many-tables' && selected.includes('downtime')) {
  // Its probe reads the panel's newest user and message.
  throw new Error('the downtime section needs the panel tables: --dataset panel or long-bodies');
}
const database = values.db ?? datasetDatabaseName(kind, scale);
/** Where the run's results are filed in results.json (see ScaleResults). */
const resultsKey = kind === 'panel' ? String(scale) : `${kind}@${scale}`;
const benchStarted = Date.now();
const log = (line: string) => {
  const elapsed = ((Date.now() - benchStarted) / 1000).toFixed(0).padStart(5);
  process.stdout.write(`[${elapsed} s] ${line}\n`);
};

const workDir = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-bench-'));
await mkdir(path.join(workDir, 'raw'));
let stack: PgkeepStack | undefined;
/** Whether this run made (or reused) the dataset on the shared server: only then is it dropped. */
let usesMainDataset = false;
let cleaning: Promise<void> | undefined;
const cleanups = new Set<() => Promise<void>>();

async function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const task of cleanups) {
      await task().catch((error: unknown) => log(`cleaning up a section: ${String(error)}`));
    }
    await stack?.stop().catch((error: unknown) => log(`stopping pgkeep: ${String(error)}`));
    // Only this run's: its own raw restore target, the databases its restores replaced, and
    // the scratch databases of its own lock namespace (never another deployment's).
    const tag = stack ? createHash('sha256').update(stack.prefix).digest('hex').slice(0, 8) : null;
    const leftovers = [
      ...(usesMainDataset ? [`${database}_raw`, `${database}_limits`] : []),
      ...(usesMainDataset ? await listDatabases(`${database}\\_pre\\_restore\\_%`) : []),
      ...(tag ? await listDatabases(`pgkeep\\_restore\\_${tag}\\_%`) : []),
      ...(tag ? await listDatabases(`pgkeep\\_verify\\_${tag}\\_%`) : []),
    ];
    if (usesMainDataset && !values['keep-dataset']) leftovers.push(database);
    for (const name of leftovers) {
      await dropDatabase(name).catch((error: unknown) => log(`drop ${name}: ${String(error)}`));
    }
    await rm(workDir, { recursive: true, force: true });
    log(
      !usesMainDataset
        ? 'cleaned up'
        : values['keep-dataset']
          ? `cleaned up (kept the dataset ${database})`
          : 'cleaned up (dataset dropped)',
    );
  })();
  return cleaning;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: cleaning up`);
    void cleanup().finally(() => process.exit(130));
  });
}

try {
  log(
    `pgkeep bench: ${kind} dataset, scale ${scale}, ${runs} runs, sections ${selected.join(', ')}`,
  );
  log(`load average ${loadAverage().join(' / ')}; work dir ${workDir}`);
  const resultsFile = values['results-file'];
  const previous = (await loadResults(resultsFile)).scales[resultsKey];
  const machine = await machineInfo();
  const code = await codeVersion();
  log(`pgkeep code: ${code}`);
  // pitr brings its own cluster, dataset and pgkeep: run alone (and with this scale's dataset
  // already on record), it leaves the shared server's dataset alone and starts no other pgkeep.
  const mainNeeded = !(selected.every((name) => name === 'pitr') && previous);
  let ctx: BenchContext | undefined;
  let datasetRecord: ScaleResults['dataset'];
  if (mainNeeded) {
    usesMainDataset = true;
    const dataset = await generateDataset(database, scale, { log, kind });
    // Also the warm-up: every table read once before anything is timed.
    const dumpBytes = await countOutputBytes(
      'pg_dump',
      ['-Fc', '-Z0', database],
      toolEnv(database),
    );
    log(
      `dataset ${(dataset.sizeBytes / 1e9).toFixed(2)} GB; pg_dump -Fc -Z0 ${(dumpBytes / 1e6).toFixed(0)} MB`,
    );
    stack = await startPgkeep({
      database,
      workDir,
      ...(values['api-cpu-prof']
        ? { apiNodeArgs: ['--cpu-prof', `--cpu-prof-dir=${API_PROFILE_DIR}`] }
        : {}),
    });
    log(`pgkeep up: API ${stack.baseUrl}, worker pid ${stack.worker.pid}, prefix ${stack.prefix}`);
    if (values['api-cpu-prof']) {
      log(`the API's CPU profile goes to ${API_PROFILE_DIR} when it stops`);
    }
    ctx = {
      scale,
      parallelJobs: Number(values['parallel-jobs']),
      kind,
      sizeBytes: dataset.sizeBytes,
      dumpBytes,
      runs,
      database,
      workDir,
      stack,
      log,
      code,
      cleanups,
    };
    datasetRecord = {
      kind,
      tables: dataset.tables,
      database,
      sizeBytes: dataset.sizeBytes,
      counts: { ...dataset.counts },
      generatedMs: dataset.generatedMs ?? previous?.dataset.generatedMs ?? null,
      dumpBytes,
    };
  } else {
    datasetRecord = (previous as ScaleResults).dataset;
  }
  const main = (): BenchContext => {
    if (!ctx) throw new Error('this section needs the dataset and pgkeep of the run');
    return ctx;
  };
  const run: ScaleResults = {
    scale,
    machine,
    dataset: datasetRecord,
    sections: { ...(previous?.sections ?? {}) },
  };
  const save = async () => {
    // Read again: another scale may have been written meanwhile by another run.
    const results = await loadResults(resultsFile);
    results.note =
      'Raw numbers of `npm run bench` (bench/run.ts), by scale; times in ms, sizes in bytes, memory in MB. BENCHMARKS.md is rendered from this file.';
    results.scales[resultsKey] = run;
    await writeFile(resultsFile, `${JSON.stringify(results, null, 2)}\n`);
    await writeMarkdown(results);
  };

  const sectionRunners: Record<SectionName, () => Promise<void>> = {
    backup: async () => {
      run.sections.backup = await benchBackup(main());
    },
    restore: async () => {
      run.sections.restore = await benchRestore(main());
    },
    limits: async () => {
      run.sections.limits = await benchLimits(main());
    },
    downtime: async () => {
      run.sections.downtime = await benchDowntime(main());
    },
    api: async () => {
      run.sections.api = await benchApi(main(), {
        connections: Number(values['api-connections']),
        durationSec: Number(values['api-duration']),
        panelSteps,
        panelStepSeconds: Number(values['api-panel-seconds']),
        panelP99LimitMs: Number(values['api-panel-p99-ms']),
      });
    },
    start: async () => {
      run.sections.start = await benchStart(main(), Number(values['start-samples']));
    },
    targets: async () => {
      run.sections.targets = await benchTargets(main(), targetsDatabases);
    },
    pitr: async () => {
      run.sections.pitr = await benchPitr(
        { workDir, log, code, cleanups },
        { scale: pitrScale, loadSeconds: pitrLoadSeconds, runs: pitrRuns },
      );
    },
  };
  for (const name of selected) {
    log(`section ${name} (load average ${loadAverage().join(' / ')})`);
    await sectionRunners[name]();
    // Saved after every section: a run stopped later keeps what it measured.
    await save();
  }
  const memoryChecks: TargetCheck[] = [];
  const memory = renderMemory(await loadResults(resultsFile), memoryChecks);
  process.stdout.write(`\n${renderScale(run, [])}\n\n## Memory across scales\n\n${memory}\n\n`);
  if (memoryChecks.length > 0) process.stdout.write(`${checksTable(memoryChecks)}\n\n`);
  log(
    `wrote ${path.relative(ROOT, resultsFile)} and ${path.relative(ROOT, values['markdown-file'])}`,
  );
} finally {
  await cleanup();
}
