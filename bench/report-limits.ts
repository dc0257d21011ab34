import type {
  BackupSection,
  BenchResults,
  LimitKey,
  LimitsSection,
  RestoreSection,
  ScaleResults,
  Variant,
} from './lib/results.js';
import { median } from './lib/util.js';
import { mb, metaLine, pct, s, table } from './report-sections.js';

/**
 * Section 9 of BENCHMARKS.md (the machine's own limits, and pgkeep's backup and restore as a
 * fraction of them) and the projections to large databases. Pure: numbers in, markdown out.
 */

const rate = (bytes: number, ms: number) => bytes / 1e6 / (ms / 1000);
const mbps = (value: number) => `${value.toFixed(0)} MB/s`;
const medianMs = (variant: Variant) => median(variant.runs.map((run) => run.ms));

/** MB/s of a limit measure's own bytes (median of its runs), or NaN when it is missing. */
function limitRate(section: LimitsSection, key: LimitKey): number {
  const measure = section.measures[key];
  if (!measure || measure.runs.length === 0) return Number.NaN;
  return rate(measure.bytes, median(measure.runs));
}

/** The pgkeep backup variants of a section: the single stream, and a parallel one if measured. */
export function pgkeepBackups(section: BackupSection): Variant[] {
  const single: Variant = {
    ...section.variants.pgkeep,
    shape: section.variants.pgkeep.shape ?? { variant: 'single', jobs: 1, format: 'custom' },
  };
  return section.variants.pgkeepParallel ? [single, section.variants.pgkeepParallel] : [single];
}

const shapeLabel = (variant: Variant) =>
  variant.shape?.variant === 'parallel'
    ? `backup, parallel (${variant.shape.format}, ${variant.shape.jobs} jobs)`
    : 'backup, single stream';

export function limitsTables(run: ScaleResults, limits: LimitsSection): string {
  const { dumpBytes, sizeBytes } = run.dataset;
  const rows = Object.entries(limits.measures).map(([, measure]) => {
    if (measure.runs.length === 0) return [measure.label, '—', '—', '—', measure.note ?? ''];
    const ms = median(measure.runs);
    return [
      measure.label,
      s(ms),
      mb(measure.bytes),
      mbps(rate(measure.bytes, ms)),
      measure.note ?? 'MB/s of the bytes written or read',
    ];
  });
  const parts = [
    metaLine(limits),
    '',
    table(['limit', 'wall (median)', 'bytes', 'MB/s', 'of what'], rows),
    '',
    `Disk: a file in the backups' directory (\`${limits.diskDir}\`), written with \`conv=fdatasync\` (the time includes reaching the disk) and read back with O_DIRECT (the page cache bypassed; the machine's caches are not dropped). The machine is shared: these are what this run got, not the hardware's rating.`,
  ];

  const { backup, restore } = run.sections;
  const artifactBytes = backup
    ? median(backup.variants.pgkeep.runs.map((r) => r.bytes ?? 0))
    : limits.artifactBytes;
  // Every limit in MB/s of dump bytes: the disk moves the compressed artifact.
  const ratio = dumpBytes / artifactBytes;
  const read = limitRate(limits, 'pgDumpRead');
  const compress = limitRate(limits, 'zstdCompress');
  const write = limitRate(limits, 'diskWrite') * ratio;
  const diskRead = limitRate(limits, 'diskRead') * ratio;
  const decompress = limitRate(limits, 'zstdDecompress');
  const load = limitRate(limits, 'pgRestoreLoad');
  const slowest = (stages: [string, number][]) =>
    stages
      .filter(([, value]) => Number.isFinite(value))
      .reduce((a, b) => (b[1] < a[1] ? b : a), ['—', Number.POSITIVE_INFINITY]);
  const compare: string[][] = [];
  const row = (label: string, ms: number, bound: [string, number], extra = '') => [
    label,
    s(ms),
    mbps(rate(dumpBytes, ms)),
    mbps(rate(sizeBytes, ms)),
    `${bound[0]}: ${mbps(bound[1])}`,
    `${pct(rate(dumpBytes, ms) / bound[1])}${extra}`,
  ];
  const backupBound = slowest([
    ['PostgreSQL read (pg_dump -Z0)', read],
    ['zstd -3', compress],
    ['disk write', write],
  ]);
  if (backup) {
    for (const variant of pgkeepBackups(backup)) {
      compare.push(row(`pgkeep ${shapeLabel(variant)}`, medianMs(variant), backupBound));
    }
  }
  if (restore) {
    const bound = slowest([
      ['disk read', diskRead],
      ['zstd -d', decompress],
      ['PostgreSQL load (pg_restore -j 2)', load],
    ]);
    // pgkeep decompresses into a scratch file, then loads it: the two stages add up.
    const sequential = 1 / (1 / decompress + 1 / load);
    const ms = medianMs(restore.variants.pgkeep);
    compare.push(
      row(
        'pgkeep restore',
        ms,
        bound,
        `; ${pct(rate(dumpBytes, ms) / sequential)} of zstd -d then load in sequence (${mbps(sequential)})`,
      ),
    );
  }
  if (compare.length > 0) {
    parts.push(
      '',
      '#### pgkeep against the limits',
      '',
      table(
        [
          'path',
          'pgkeep wall (median)',
          'MB/s of dump bytes',
          'MB/s of database size',
          'slowest stage alone (MB/s of dump bytes)',
          'pgkeep ÷ that',
        ],
        compare,
      ),
      '',
      `Every rate in MB/s of the ${mb(dumpBytes)} \`pg_dump -Fc -Z0\` writes for this database (${mb(sizeBytes)} on disk); the disk moves the compressed artifact (${mb(artifactBytes)}), so its rate counts ${ratio.toFixed(2)} dump bytes per byte. A backup streams pg_dump → zstd → disk at once, so it can go no faster than its slowest stage alone; a restore reads and decompresses the artifact into a scratch file, then loads it with \`pg_restore -j\`, so its bound is the two in sequence.`,
    );
  }
  return parts.join('\n');
}

const GB = 1e9;
const duration = (ms: number) => {
  const sec = ms / 1000;
  if (sec < 120) return `${sec.toFixed(0)} s`;
  if (sec < 7200) return `${(sec / 60).toFixed(0)} min`;
  return `${(sec / 3600).toFixed(1)} h`;
};
const size = (bytes: number) =>
  bytes >= 1e12 ? `${(bytes / 1e12).toFixed(2)} TB` : `${(bytes / GB).toFixed(0)} GB`;

/** The span of a polled job phase (median over runs), as pgkeepNote in report-sections.ts. */
function phaseSpan(variant: Variant, phase: string): number {
  const spans = variant.runs.flatMap((run) => {
    const seen = Object.entries(run.phases ?? {})
      .filter(([name]) => name !== 'completed')
      .sort((a, b) => a[1] - b[1]);
    const index = seen.findIndex(([name]) => name === phase);
    if (index < 0) return [];
    const end = seen[index + 1]?.[1] ?? run.ms;
    return [end - (seen[index]?.[1] ?? 0)];
  });
  return spans.length > 0 ? median(spans) : 0;
}

/**
 * Time, disk and worker memory of pgkeep's backup and restore of 100 GB and 1 TB databases,
 * on this machine and on a 16-core one, from the largest measured run of each dataset.
 */
export function projectionTables(results: BenchResults): string {
  const byKind = new Map<string, ScaleResults>();
  for (const run of Object.values(results.scales)) {
    if (!run.sections.backup || !run.sections.restore) continue;
    const kind = run.dataset.kind ?? 'panel';
    const best = byKind.get(kind);
    if (!best || run.dataset.sizeBytes > best.dataset.sizeBytes) byKind.set(kind, run);
  }
  if (byKind.size === 0) return '_No run with both backup and restore yet._';
  const parts: string[] = [];
  for (const [kind, run] of byKind) {
    const backup = run.sections.backup as BackupSection;
    const restore = run.sections.restore as RestoreSection;
    const limits = run.sections.limits;
    const { sizeBytes, dumpBytes } = run.dataset;
    const tables = run.dataset.tables ?? 4;
    const measuredCores = run.machine.cpus;
    const artifactPerByte =
      median(backup.variants.pgkeep.runs.map((r) => r.bytes ?? 0)) / sizeBytes;
    const dumpPerByte = dumpBytes / sizeBytes;
    const diskWrite = limits ? limitRate(limits, 'diskWrite') * 1e6 : Number.NaN;
    const workerMb = Math.max(backup.memory.selfPeakMb, restore.memory.selfPeakMb);
    const treeMb = (section: BackupSection | RestoreSection) =>
      section.memory.treePeakMb ?? section.memory.selfPeakMb + section.memory.childrenPeakMb;
    const restoreJobs = 2;
    const rows: string[][] = [];
    for (const target of [100 * GB, 1000 * GB]) {
      const factor = target / sizeBytes;
      const artifact = target * artifactPerByte;
      // Floors from the measured disk: the artifact written; the database written.
      const writeFloor = (bytes: number) =>
        Number.isFinite(diskWrite) ? (bytes / diskWrite) * 1000 : 0;
      for (const cores of [measuredCores, 16]) {
        for (const variant of pgkeepBackups(backup)) {
          const ms = medianMs(variant) * factor;
          const jobs = variant.shape?.jobs ?? 1;
          const parallel = variant.shape?.variant === 'parallel';
          // Measured with `jobs` on this machine; on `cores`, as many jobs as cores.
          const speedup = parallel
            ? Math.min(cores, tables) / Math.min(measuredCores, tables, jobs)
            : 1;
          const projected = Math.max(ms / speedup, writeFloor(artifact));
          rows.push([
            size(target),
            String(cores),
            shapeLabel(variant),
            duration(projected),
            `${size(artifact)} artifact, no scratch`,
            `${workerMb.toFixed(0)} MB (tree ${treeMb(backup).toFixed(0)} MB)`,
          ]);
        }
        const total = medianMs(restore.variants.pgkeep) * factor;
        const loading = phaseSpan(restore.variants.pgkeep, 'restoring') * factor;
        const speedup = Math.min(cores, tables) / Math.min(restoreJobs, tables);
        const projected = Math.max(total - loading + loading / speedup, writeFloor(target));
        const children =
          cores === measuredCores
            ? treeMb(restore)
            : treeMb(restore) +
              (Math.min(cores, tables) - restoreJobs) *
                (restore.memory.byCommandMb.pg_restore ?? 0);
        rows.push([
          size(target),
          String(cores),
          `restore (pg_restore -j ${Math.min(cores, tables)})`,
          duration(projected),
          `${size(target * dumpPerByte)} scratch file + ${size(target)} new database beside the old`,
          `${workerMb.toFixed(0)} MB (tree ${children.toFixed(0)} MB)`,
        ]);
      }
    }
    parts.push(
      `**${kind}** dataset, from scale ${run.scale} (${(sizeBytes / GB).toFixed(2)} GB, ${tables} tables, measured on ${measuredCores} cores):`,
      '',
      table(['database', 'cores', 'job', 'time', 'disk', 'worker peak RSS'], rows),
      '',
    );
  }
  parts.push(
    `Assumptions: time, artifact and scratch grow linearly with the database's size from the measured per-GB rates (pgkeep's wall time, artifact bytes and \`pg_dump -Z0\` bytes per byte of \`pg_database_size\`); the data's shape stays that of the dataset. On more cores only the parallel parts speed up, by min(cores, tables) ÷ min(measured cores, tables): a parallel backup's dump (its jobs taken as the cores), and the restore's \`restoring\` phase (pg_restore -j, data and index builds); the single-stream backup (one pg_dump) and the restore's decompression and checks do not. Every time is floored at the measured disk write rate (the artifact for a backup, the database for a restore), when the limits section ran. The worker's own peak is taken as flat (section 4 shows it does not grow with the database); its children grow with pg_restore's jobs (one process each). A restore also needs PostgreSQL to hold the new database beside the old until the swap. Projections, not measurements: WAL, checkpoints, autovacuum and a bigger machine's disk change them.`,
  );
  return parts.join('\n');
}
