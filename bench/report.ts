import type { BenchResults, ScaleResults } from './lib/results.js';
import { limitsTables, projectionTables } from './report-limits.js';
import { pitrTables } from './report-pitr.js';
import {
  apiTables,
  backupTables,
  downtimeTables,
  mb,
  pass,
  renderMemory,
  restoreTables,
  s,
  startTables,
  type TargetCheck,
  table,
} from './report-sections.js';
import { targetsTables } from './report-targets.js';

export { renderMemory, type TargetCheck };

/**
 * BENCHMARKS.md from results.json: a table per section with the medians, the ratio to each
 * baseline and pass/fail against the targets of issue 7 (report-sections.ts renders the
 * sections). Pure: numbers in, markdown out.
 */
/** `Scale 0.3` for the panel dataset, `many-tables dataset, scale 0.3` for the others. */
export function runTitle(run: ScaleResults): string {
  const kind = run.dataset.kind ?? 'panel';
  return kind === 'panel' ? `Scale ${run.scale}` : `${kind} dataset, scale ${run.scale}`;
}

export function renderScale(run: ScaleResults, checks: TargetCheck[]): string {
  const { dataset } = run;
  const parts = [
    `## ${runTitle(run)}`,
    '',
    `Database \`${dataset.database}\`: ${(dataset.sizeBytes / 1e9).toFixed(2)} GB on disk with indexes; ${Object.entries(
      dataset.counts,
    )
      .map(([name, count]) => `${count.toLocaleString('en-US')} ${name}`)
      .join(
        ', ',
      )}; \`pg_dump -Fc -Z0\` writes ${mb(dataset.dumpBytes)}.${dataset.generatedMs ? ` Generated in ${s(dataset.generatedMs)}.` : ''}`,
  ];
  const scaleChecks: TargetCheck[] = [];
  const { backup, restore, limits, downtime, api, start, targets, pitr } = run.sections;
  if (backup)
    parts.push('', '### 1. Backup', '', backupTables(backup, dataset.dumpBytes, scaleChecks));
  if (restore) parts.push('', '### 2. Restore', '', restoreTables(restore, scaleChecks));
  if (downtime)
    parts.push('', '### 3. Downtime during restore', '', downtimeTables(downtime, scaleChecks));
  if (api) parts.push('', '### 5. API under load', '', apiTables(api, scaleChecks));
  if (start) parts.push('', '### 6. Enqueue to start', '', startTables(start));
  if (targets) {
    parts.push(
      '',
      '### 7. Nightly run of many databases (targets)',
      '',
      targetsTables(targets, scaleChecks),
    );
  }
  if (pitr) {
    parts.push('', '### 8. Point-in-time recovery (pitr)', '', pitrTables(pitr));
  }
  if (limits) {
    parts.push('', '### 9. Physical limits (limits)', '', limitsTables(run, limits));
  }
  const where = runTitle(run).replace(/^Scale/, 'scale');
  if (scaleChecks.length > 0) {
    parts.push('', `### Targets at ${where}`, '', checksTable(scaleChecks));
  }
  for (const check of scaleChecks)
    checks.push({ ...check, section: `${check.section} (${where})` });
  return parts.join('\n');
}

export function checksTable(checks: TargetCheck[]): string {
  return table(
    ['section', 'target', 'measured', 'result'],
    checks.map((check) => [
      check.section,
      check.target,
      check.measured,
      check.ok ? pass(true) : `${pass(false)} (${check.miss})`,
    ]),
  );
}

export function renderMarkdown(results: BenchResults, analysis: string | null): string {
  const kindOrder = (run: ScaleResults) =>
    ['panel', 'long-bodies', 'many-tables'].indexOf(run.dataset.kind ?? 'panel');
  const runs = Object.values(results.scales).sort(
    (a, b) => kindOrder(a) - kindOrder(b) || a.scale - b.scale,
  );
  const latest = runs.at(-1);
  const checks: TargetCheck[] = [];
  const scaleParts = runs.map((run) => renderScale(run, checks));
  const memory = renderMemory(results, checks);
  const machine = latest?.machine;
  const dates = runs
    .flatMap((run) => Object.values(run.sections).map((section) => section.startedAt.slice(0, 10)))
    .filter((date, index, all) => all.indexOf(date) === index);
  return [
    '# pgkeep benchmarks',
    '',
    "Measured by `npm run bench` (bench/run.ts): pgkeep end to end (its API and worker as real processes, driven over HTTP) against the raw PostgreSQL tools and the panel's old way, on the same generated database in the same run, alternating methods (ABAB) and taking medians. In the backup and restore sections every timed run starts after a `CHECKPOINT` and a `sync` (since 2026-12-02), so that none pays for the write-back of the run before it. The raw numbers are in [bench/results.json](bench/results.json); this file is rendered from them.",
    '',
    '```sh',
    'npm run bench                                  # scale 0.1 (≈ 0.3 GB), every section, 3 runs: ≈ 4 min',
    'npm run bench -- --scale 1                     # ≈ 3 GB: dataset ≈ 4 min, the whole run ≈ 30 min',
    'npm run bench -- --scale 0.03 --sections backup,api --runs 3   # a quick look at some sections',
    'npm run bench -- --sections targets --runs 3   # 20 small databases, nightly run: ≈ 10 min on a busy machine',
    'npm run bench -- --sections pitr               # PITR of a ≈ 1 GB database on a cluster of its own (--pitr-scale 0.33)',
    'npm run bench -- --scale 1 --keep-dataset      # keep the generated database for the next run',
    'npm run bench -- --scale 0.3 --dataset many-tables --sections backup,restore,limits   # 200 tables',
    'npm run bench -- --scale 0.3 --dataset long-bodies   # messages of 300–900 characters, same size',
    'npx tsx bench/generate-dataset.ts --scale 1    # only the dataset',
    'npm run bench -- --render-only                 # BENCHMARKS.md again from bench/results.json',
    '```',
    '',
    'Profiling aids (not part of the run): `bench/profile-worker.ts` (the worker under `--cpu-prof` for one backup and one restore), `bench/backup-datapath.ts` (the backup and restore data paths alone), `bench/api-breakdown.ts` (the pieces of one job poll), `bench/api-variants.ts` (the job route with proposed changes, over HTTP), `bench/profile-summary.ts` (self time by package and function of a `.cpuprofile`; `--api-cpu-prof` writes one for the API during a run).',
    '',
    "Datasets (`--dataset`): `panel` (the panel's tables; filed by scale), `long-bodies` (the same tables, fewer messages of 300–900 characters, about the same size) and `many-tables` (200 tables of four shapes, none above about 1 % of the whole, about the same size), each in a database of its own (`pgkeep_bench_s<scale>` for `panel`, `pgkeep_bench_<dataset>_s<scale>` for the others) and filed as `<dataset>@<scale>`. Sections: `backup`, `restore`, `limits`, `downtime`, `api`, `start`, `targets`, `pitr` (memory is sampled during backup and restore). `limits` measures the machine's own rates on the same dataset (disk write and O_DIRECT read, zstd alone, `pg_dump -Z0` and `COPY` to /dev/null, `pg_restore -j 2` of the uncompressed dump) and sets pgkeep's backup and restore against them. A run replaces the sections it ran at its scale in results.json and keeps the others. `targets` makes its own small databases (`--targets-databases 20`), the same at every scale; it is filed under the scale of the run. `pitr` starts a PostgreSQL cluster of its own with the dataset at `--pitr-scale` (0.33 ≈ 1 GB), a paced write load of `--pitr-load-seconds` (60), and `--pitr-runs` (1) restores each way; it too is filed under the scale of the run, and run alone it neither makes nor drops the shared server's dataset.",
    '',
    '## Machine',
    '',
    machine
      ? table(
          ['', ''],
          [
            ['CPU', `${machine.cpus} × ${machine.cpuModel}`],
            ['memory', `${machine.memoryGiB} GiB`],
            ['kernel', machine.kernel],
            ['Node', machine.node],
            ['PostgreSQL server', machine.postgresServer],
            ['pg_dump / pg_restore', `${machine.pgDump} / ${machine.pgRestore}`],
            ['zstd', machine.zstd],
            ['Redis', machine.redis],
            ['dates', dates.join(', ')],
          ],
        )
      : '_no run yet_',
    '',
    'The machine was shared with other work during the runs: each section notes the load average when it started (2 cores: a load of 2 is a full machine).',
    '',
    ...scaleParts.flatMap((part) => [part, '']),
    '## 4. Memory (worker and children) across scales',
    '',
    memory,
    '',
    '## Projections: 100 GB and 1 TB',
    '',
    projectionTables(results),
    '',
    '## All targets',
    '',
    checksTable(checks),
    ...(analysis ? ['', analysis.trim()] : []),
    '',
  ].join('\n');
}
