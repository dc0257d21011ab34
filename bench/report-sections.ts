import type {
  ApiSection,
  ApiVariant,
  BackupSection,
  BenchResults,
  DowntimeSection,
  RestoreSection,
  SectionMeta,
  StartSection,
  Variant,
} from './lib/results.js';
import { median } from './lib/util.js';

/**
 * The tables of each section of BENCHMARKS.md: medians, the ratio to each baseline, and the
 * targets of issue 7 checked (pushed onto `checks`). Pure: numbers in, markdown out.
 */

export const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
export const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
export const x = (ratio: number) => `${ratio.toFixed(2)}×`;
export const pct = (ratio: number) => `${(ratio * 100).toFixed(0)} %`;
export const pass = (ok: boolean) => (ok ? '**pass**' : '**FAIL**');
const medianMs = (variant: Variant) => median(variant.runs.map((run) => run.ms));
const medianBytes = (variant: Variant) => median(variant.runs.map((run) => run.bytes ?? 0));
const runList = (variant: Variant) =>
  variant.runs.map((run) => (run.ms / 1000).toFixed(2)).join(' / ');

export function table(header: string[], rows: string[][]): string {
  // A `|` inside a cell (also inside code) would end the cell.
  const line = (cells: string[]) =>
    `| ${cells.map((cell) => cell.replaceAll('|', '\\|')).join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

export function metaLine(meta: SectionMeta): string {
  const code = meta.code ? `, pgkeep at \`${meta.code}\`` : '';
  return `_${meta.runs} runs each, alternating (ABAB); medians. Started ${meta.startedAt}${code}, load average at start ${meta.loadAverage.join(' / ')} (1/5/15 min)._`;
}

/** pgkeep's own job time and the worker's CPU, beside the end-to-end time. */
function pgkeepNote(variant: Variant): string {
  const jobMs = variant.runs.flatMap((run) => (run.jobMs === undefined ? [] : [run.jobMs]));
  const cpu = variant.runs.flatMap((run) =>
    run.workerCpuMs === undefined ? [] : [run.workerCpuMs],
  );
  const parts: string[] = [];
  if (jobMs.length > 0) {
    parts.push(
      `pgkeep's job reports ${s(median(jobMs))} itself (median); the rest of the end-to-end time is the queue, the locks and the polling`,
    );
  }
  if (cpu.length > 0) parts.push(`the worker process used ${s(median(cpu))} of CPU per run`);
  const phased = variant.runs.filter((run) => run.phases && Object.keys(run.phases).length > 0);
  if (phased.length > 0) {
    // A phase lasts from its first sighting (50 ms polls) to the next phase's, the last one
    // to the job's end; 'completed' is the end itself.
    const durations = new Map<string, { starts: number[]; spans: number[] }>();
    for (const run of phased) {
      const seen = Object.entries(run.phases ?? {})
        .filter(([phase]) => phase !== 'completed')
        .sort((a, b) => a[1] - b[1]);
      seen.forEach(([phase, at], index) => {
        const end = seen[index + 1]?.[1] ?? run.ms;
        const entry = durations.get(phase) ?? { starts: [], spans: [] };
        entry.starts.push(at);
        entry.spans.push(end - at);
        durations.set(phase, entry);
      });
    }
    const spans = [...durations.entries()]
      .sort((a, b) => median(a[1].starts) - median(b[1].starts))
      .map(([phase, entry]) => `${phase} ${s(median(entry.spans))}`);
    parts.push(`job phases as polled (median): ${spans.join(', ')}`);
  }
  return parts.length > 0 ? `${parts.join('; ')}.` : '';
}

export interface TargetCheck {
  section: string;
  target: string;
  measured: string;
  ok: boolean;
  /** How far from the target, when missed. */
  miss?: string;
}

export function backupTables(
  section: BackupSection,
  dumpBytes: number,
  checks: TargetCheck[],
): string {
  const { pgkeep, pgkeepParallel, zstd, zstdChecked, fc, plain } = section.variants;
  const p = medianMs(pgkeep);
  const shown = [
    pgkeep,
    ...(pgkeepParallel ? [pgkeepParallel] : []),
    zstd,
    ...(zstdChecked ? [zstdChecked] : []),
    fc,
    plain,
  ];
  const rows = shown.map((variant) => {
    const ms = medianMs(variant);
    return [
      variant.label,
      s(ms),
      runList(variant),
      mb(medianBytes(variant)),
      `${(dumpBytes / 1e6 / (ms / 1000)).toFixed(0)} MB/s`,
      variant === pgkeep ? '—' : `${x(p / ms)} (this is ${x(ms / p)} pgkeep's)`,
    ];
  });
  const vsRaw = p / medianMs(zstd);
  const vsFc = medianMs(fc) / p;
  const sizeOk = medianBytes(pgkeep) <= medianBytes(fc);
  checks.push(
    {
      section: 'backup',
      target: 'pgkeep ≤ 1.05 × `pg_dump -Fc -Z0 | zstd`',
      measured: x(vsRaw),
      ok: vsRaw <= 1.05,
      miss: `${pct(vsRaw / 1.05 - 1)} over`,
    },
    {
      section: 'backup',
      target: 'pgkeep ≥ 2 × faster than `pg_dump -Fc`',
      measured: `${x(vsFc)} faster`,
      ok: vsFc >= 2,
      miss: `${pct(1 - vsFc / 2)} short`,
    },
    {
      section: 'backup',
      target: 'pgkeep size ≤ `pg_dump -Fc` size',
      measured: `${mb(medianBytes(pgkeep))} vs ${mb(medianBytes(fc))}`,
      ok: sizeOk,
      miss: `${pct(medianBytes(pgkeep) / medianBytes(fc) - 1)} larger`,
    },
  );
  return [
    metaLine(section),
    '',
    table(['method', 'wall (median)', 'runs (s)', 'size', 'MB/s', 'pgkeep time ÷ this'], rows),
    '',
    `MB/s: the ${mb(dumpBytes)} that \`pg_dump -Fc -Z0\` writes for this database, divided by the wall time (the same data for every method). ${pgkeepNote(pgkeep)}`,
  ].join('\n');
}

export function restoreTables(section: RestoreSection, checks: TargetCheck[]): string {
  const { pgkeep, rawPipe, rawFile, fcJobs } = section.variants;
  const p = medianMs(pgkeep);
  const fastestRaw = Math.min(medianMs(rawPipe), medianMs(rawFile));
  const rows = [pgkeep, rawPipe, rawFile, fcJobs].map((variant) => {
    const ms = medianMs(variant);
    return [variant.label, s(ms), runList(variant), variant === pgkeep ? '—' : x(p / ms)];
  });
  const ratio = p / fastestRaw;
  checks.push({
    section: 'restore',
    target: 'pgkeep ≤ 1.15 × the fastest raw restore of the same artifact',
    measured: x(ratio),
    ok: ratio <= 1.15,
    miss: `${pct(ratio / 1.15 - 1)} over`,
  });
  const toFile = p / medianMs(rawFile);
  checks.push({
    section: 'restore',
    target: 'pgkeep ≤ 1.0 × `zstd -d -o f && pg_restore -j 2 f` of the same artifact',
    measured: x(toFile),
    ok: toFile <= 1.0,
    miss: `${pct(toFile - 1)} over`,
  });
  return [
    metaLine(section),
    '',
    table(['method', 'wall (median)', 'runs (s)', 'pgkeep time ÷ this'], rows),
    '',
    `Raw restores go into a fresh empty database (\`createdb\` included in the time). pgkeep's swap itself (as its job reports it): median ${median(section.swapMs).toFixed(0)} ms. ${pgkeepNote(pgkeep)}`,
  ].join('\n');
}

export function downtimeTables(section: DowntimeSection, checks: TargetCheck[]): string {
  const row = (label: string, runs: DowntimeSection['pgkeep']) => [
    label,
    `${median(runs.map((r) => r.gapMs)).toFixed(0)} ms`,
    `${Math.max(...runs.map((r) => r.gapMs)).toFixed(0)} ms`,
    runs.map((r) => r.gapMs.toFixed(0)).join(' / '),
    s(median(runs.map((r) => r.totalMs))),
  ];
  const worst = Math.max(...section.pgkeep.map((r) => r.gapMs));
  const oldGap = median(section.oldWay.map((r) => r.gapMs));
  const oldTotal = median(section.oldWay.map((r) => r.totalMs));
  checks.push({
    section: 'downtime',
    target: 'pgkeep longest gap ≤ 1 s (worst run)',
    measured: `${worst.toFixed(0)} ms`,
    ok: worst <= 1000,
    miss: `${(worst - 1000).toFixed(0)} ms over`,
  });
  return [
    metaLine(section),
    '',
    table(
      [
        'restore',
        'longest gap (median)',
        'longest gap (worst)',
        'runs (ms)',
        'restore time (median)',
      ],
      [
        row('pgkeep (swap)', section.pgkeep),
        row('panel, old: `dropdb`, `createdb`, `psql -f` plain SQL', section.oldWay),
      ],
    ),
    '',
    `Probe: one client, a query every ${section.probeIntervalMs} ms that needs the newest user and the newest message; reconnects after any error. The old way's gap is ${pct(oldGap / oldTotal)} of its restore (the rest is index builds after the data, when the queries answer again but slowly).`,
  ].join('\n');
}

export function apiTables(section: ApiSection, checks: TargetCheck[]): string {
  const { job, jobActive, list, bare } = section.variants;
  const med = (runs: ApiVariant['runs'], key: 'requestsPerSec' | 'p50Ms' | 'p99Ms') =>
    median(runs.map((run) => run[key]));
  const bareRps = med(bare.runs, 'requestsPerSec');
  const polls = jobActive ? [job, jobActive] : [job];
  const rows = [...polls, list, bare].map((variant) => [
    variant.label,
    med(variant.runs, 'requestsPerSec').toFixed(0),
    variant.runs.map((run) => run.requestsPerSec.toFixed(0)).join(' / '),
    `${med(variant.runs, 'p50Ms').toFixed(1)} ms`,
    `${med(variant.runs, 'p99Ms').toFixed(1)} ms`,
    variant === bare ? '—' : pct(med(variant.runs, 'requestsPerSec') / bareRps),
    String(variant.runs.reduce((sum, run) => sum + run.non2xx + run.errors, 0)),
  ]);
  // The targets hold for every kind of poll measured: a finished job's and an unfinished one's.
  for (const variant of polls) {
    const rps = med(variant.runs, 'requestsPerSec');
    const p99 = med(variant.runs, 'p99Ms');
    checks.push(
      {
        section: 'api',
        target: `${variant.label} ≥ 5,000 req/s`,
        measured: `${rps.toFixed(0)} req/s`,
        ok: rps >= 5000,
        miss: `${pct(1 - rps / 5000)} short`,
      },
      {
        section: 'api',
        target: `${variant.label} p99 ≤ 20 ms`,
        measured: `${p99.toFixed(1)} ms`,
        ok: p99 <= 20,
        miss: `${(p99 - 20).toFixed(1)} ms over`,
      },
      {
        section: 'api',
        target: `${variant.label} ≥ 40 % of a bare Fastify route`,
        measured: pct(rps / bareRps),
        ok: rps / bareRps >= 0.4,
        miss: `${((0.4 - rps / bareRps) * 100).toFixed(0)} points short`,
      },
    );
  }
  const kept = jobActive
    ? " The API keeps a finished job's answer in memory for a few seconds (apps/api/src/services/finished-job-cache.ts), so the finished job's polls are served without Redis; an unfinished (queued) job is read from Redis, in one script, on every poll, as a running one is."
    : '';
  return [
    metaLine(section),
    '',
    table(['endpoint', 'req/s (median)', 'runs', 'p50', 'p99', '÷ bare', 'non-2xx + errors'], rows),
    '',
    `autocannon in the bench process, ${section.connections} connections, ${section.durationSec} s per run after a 3 s warm-up of each; the API at LOG_LEVEL=warn with a real admin token (HS256).${kept}`,
    ...(section.panel ? ['', panelTable(section.panel, checks)] : []),
  ].join('\n');
}

/** The panel-like load: clients polling their own queued job once a second, step by step. */
function panelTable(panel: NonNullable<ApiSection['panel']>, checks: TargetCheck[]): string {
  const rows = panel.steps.map((step) => [
    String(step.clients),
    step.pollsPerSec.toFixed(0),
    `${step.p50Ms.toFixed(1)} ms`,
    `${step.p99Ms.toFixed(1)} ms`,
    `${step.maxMs.toFixed(0)} ms`,
    step.apiCores.toFixed(2),
    step.pollsPerCoreSec.toFixed(0),
    String(step.errors + step.non2xx),
    String(step.late),
  ]);
  const sustained = panel.sustained;
  checks.push({
    section: 'api',
    target: `panel-like load: 200 clients polling their own queued job once a second, p99 ≤ ${panel.p99LimitMs} ms, no errors`,
    measured: sustained
      ? `up to ${sustained.clients} clients (p99 ${sustained.p99Ms.toFixed(1)} ms)`
      : 'not sustained',
    ok: (sustained?.clients ?? 0) >= 200,
    miss: panel.stoppedBy ?? 'below 200 clients',
  });
  return [
    '#### Panel-like load: each client polls its own queued job once a second',
    '',
    table(
      [
        'clients (= queued jobs)',
        'polls/s',
        'p50',
        'p99',
        'max',
        'API cores used',
        'polls/s per API core',
        'errors + non-2xx',
        'late polls',
      ],
      rows,
    ),
    '',
    `Each step: as many queued backups as clients (the backups queue paused, so every poll reads Redis), the clients' first polls spread over the first second, ${panel.stepSeconds} s per step; a client whose poll is still out when its next is due skips it (late). Latency from request sent to body read, in the bench process (\`fetch\`, keep-alive), which shares the 2 cores with the API and Redis. API cores: the API process's CPU time over the step (/proc/<pid>/stat) divided by the wall time. ${sustained ? `Sustained: ${sustained.clients} clients, ${sustained.pollsPerSec.toFixed(0)} polls/s at ${sustained.pollsPerCoreSec.toFixed(0)} polls/s per API core` : 'No step stayed within the limit'}${panel.stoppedBy ? `; stopped: ${panel.stoppedBy}` : `; the limit (p99 ${panel.p99LimitMs} ms, no errors) was not reached at the last step`}.`,
  ].join('\n');
}

export function startTables(section: StartSection): string {
  const row = (label: string, values: number[]) => {
    const ordered = [...values].sort((a, b) => a - b);
    const p90 = ordered[Math.min(ordered.length - 1, Math.floor(ordered.length * 0.9))] ?? 0;
    return [
      label,
      `${median(values).toFixed(0)} ms`,
      `${p90.toFixed(0)} ms`,
      `${Math.max(...values).toFixed(0)} ms`,
    ];
  };
  return [
    `_${section.firstByteMs.length} samples. Started ${section.startedAt}${section.code ? `, pgkeep at \`${section.code}\`` : ''}, load average at start ${section.loadAverage.join(' / ')} (1/5/15 min)._`,
    '',
    table(
      ['from POST to', 'median', 'p90', 'max'],
      [
        row('202 answered', section.acceptedMs),
        row('job picked up by the worker', section.pickedUpMs),
        row('first byte in the backup file', section.firstByteMs),
      ],
    ),
    '',
    'Each sample is a full backup, cancelled through the API once its first byte is on disk. The first byte is what zstd writes, so it includes pg_dump reading the catalog and zstd filling its first block.',
    ...(section.pgDumpFirstByteMs?.length && section.rawFirstByteMs?.length
      ? [
          '',
          table(
            ['to pg_dump’s first byte', 'median', 'p90', 'max'],
            [
              row('pgkeep: from the job’s start on the worker', section.pgDumpFirstByteMs),
              row('raw: from `pg_dump -Fc -Z0` started', section.rawFirstByteMs),
            ],
          ),
          '',
          `The fixed cost of a backup: the job's locks, its snapshot session, the catalog reads that size and check the backup, then pg_dump's own start (connecting, reading the catalog, writing its table of contents). pgkeep's less the raw figure is what pgkeep adds: ${(median(section.pgDumpFirstByteMs) - median(section.rawFirstByteMs)).toFixed(0)} ms (medians).`,
        ]
      : []),
  ].join('\n');
}

export function renderMemory(results: BenchResults, checks: TargetCheck[]): string {
  const kinds = ['panel', 'long-bodies', 'many-tables'];
  const kindOf = (run: BenchResults['scales'][string]) => run.dataset.kind ?? 'panel';
  const scales = Object.values(results.scales)
    .filter((run) => run.sections.backup || run.sections.restore)
    .sort((a, b) => kinds.indexOf(kindOf(a)) - kinds.indexOf(kindOf(b)) || a.scale - b.scale);
  if (scales.length === 0) return '_No backup or restore section run yet._';
  type Memory = NonNullable<BenchResults['scales'][string]['sections']['backup']>['memory'];
  const tree = (memory: Memory | undefined) =>
    memory?.treePeakMb === undefined ? '—' : `${memory.treePeakMb.toFixed(0)} MB`;
  const rows = scales.map((run) => {
    const b = run.sections.backup?.memory;
    const r = run.sections.restore?.memory;
    const children = (memory: typeof b) =>
      memory
        ? `${memory.childrenPeakMb.toFixed(0)} MB (${Object.entries(memory.byCommandMb)
            .sort((m, n) => n[1] - m[1])
            .slice(0, 3)
            .map(([name, value]) => `${name} ${value.toFixed(0)}`)
            .join(', ')})`
        : '—';
    return [
      kindOf(run),
      String(run.scale),
      `${(run.dataset.sizeBytes / 1e9).toFixed(2)} GB`,
      b ? `${b.idleMb.toFixed(0)} MB` : '—',
      b ? `${b.selfPeakMb.toFixed(0)} MB` : '—',
      r ? `${r.selfPeakMb.toFixed(0)} MB` : '—',
      `${Math.max(b?.hwmMb ?? 0, r?.hwmMb ?? 0).toFixed(0)} MB`,
      tree(b),
      tree(r),
      children(b),
      children(r),
    ];
  });
  // The target, per dataset and per section: the worker process's own peak at every scale.
  for (const kind of kinds) {
    const runs = scales.filter((run) => kindOf(run) === kind);
    if (runs.length === 0) continue;
    for (const section of ['backup', 'restore'] as const) {
      const measured = runs.flatMap((run) => {
        const memory = run.sections[section]?.memory;
        return memory ? [{ scale: run.scale, mb: memory.selfPeakMb }] : [];
      });
      if (measured.length === 0) continue;
      const worst = Math.max(...measured.map((m) => m.mb));
      checks.push({
        section: 'memory',
        target: `worker peak RSS ≤ 150 MB, ${section}, ${kind} dataset (every scale)`,
        measured: `${worst.toFixed(0)} MB (scale ${measured.map((m) => `${m.scale}: ${m.mb.toFixed(0)}`).join(', ')})`,
        ok: worst <= 150,
        miss: `${(worst - 150).toFixed(0)} MB over`,
      });
    }
    if (runs.length > 1) {
      const peakOf = (run: BenchResults['scales'][string]) =>
        Math.max(
          run.sections.backup?.memory.selfPeakMb ?? 0,
          run.sections.restore?.memory.selfPeakMb ?? 0,
        );
      const first = peakOf(runs[0] as BenchResults['scales'][string]);
      const last = peakOf(runs.at(-1) as BenchResults['scales'][string]);
      checks.push({
        section: 'memory',
        target: `worker peak flat as the ${kind} database grows (scale ${runs[0]?.scale} → ${runs.at(-1)?.scale}: within 20 %)`,
        measured: `${first.toFixed(0)} → ${last.toFixed(0)} MB (${x(last / first)})`,
        ok: last <= first * 1.2,
        miss: `${pct(last / first - 1.2)} over`,
      });
    }
  }
  return [
    table(
      [
        'dataset',
        'scale',
        'database',
        'worker idle',
        'worker peak, backup',
        'worker peak, restore',
        'worker VmHWM',
        'worker + children peak, backup',
        'worker + children peak, restore',
        'children peak, backup',
        'children peak, restore',
      ],
      rows,
    ),
    '',
    'RSS of the worker process sampled every 50 ms from /proc during the pgkeep runs of sections 1 and 2; VmHWM is its lifetime peak (start-up included). The 150 MB target applies to the worker process itself (its own RSS); "worker + children" is the peak of the worker\'s RSS plus all its child processes\' at one instant (absent from older runs). Children: the summed RSS of its child processes at one instant (pg_restore -j 2 forks two workers), with the largest per command. PostgreSQL backends are not children of the worker and are not counted.',
  ].join('\n');
}
