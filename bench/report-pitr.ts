import type { PitrPgkeepRun, PitrRawRun, PitrSection } from './lib/results.js';
import { median } from './lib/util.js';
import { mb, s, table, x } from './report-sections.js';

/**
 * The PITR section of BENCHMARKS.md: the archive's rate under a paced load, and a restore of
 * one database to a point in time by pgkeep against the same steps by hand. Pure: numbers in,
 * markdown out.
 */

const sum = (values: (number | undefined)[]) =>
  values.reduce<number>((total, value) => total + (value ?? 0), 0);
const perMinute = (bytes: number, ms: number) => `${mb((bytes / ms) * 60_000)}/min`;
const rate = (bytes: number, ms: number) => `${(bytes / 1e6 / (ms / 1000)).toFixed(1)} MB/s`;

/** pgkeep's job time outside its four phases: locks, the window check, the instance's stop. */
const pgkeepOther = (run: PitrPgkeepRun) =>
  run.durationMs -
  run.phases.fetchMs -
  run.phases.recoveryMs -
  run.phases.dumpMs -
  run.phases.restoreMs;

const rawRecovery = (run: PitrRawRun) =>
  sum([run.steps.walMs, run.steps.configureMs, run.steps.replayMs]);
const rawRestore = (run: PitrRawRun) =>
  sum([run.steps.decompressMs, run.steps.createdbMs, run.steps.restoreMs, run.steps.swapMs]);

export function pitrTables(section: PitrSection): string {
  const pg = section.pgkeep;
  const raw = section.raw;
  const m = <T>(runs: T[], value: (run: T) => number) => median(runs.map(value));
  const row = (label: string, pgMs: number | null, rawMs: number | null, note = '') => [
    label,
    pgMs === null ? '—' : s(pgMs),
    rawMs === null ? '—' : s(rawMs),
    pgMs !== null && rawMs !== null && rawMs > 0 ? x(pgMs / rawMs) : '—',
    note,
  ];
  const rawStep = (name: string) => m(raw, (run) => run.steps[name] ?? 0);
  const walFiles = m(pg, (run) => run.walFilesFetched);
  const walBytes = m(pg, (run) => run.walBytesFetched);
  const rawWalBytes = m(raw, (run) => run.walBytes);
  const written = section.walUsed.writtenBytes;
  const pgRecovery = m(pg, (run) => run.phases.recoveryMs);
  const perFile = (pgRecovery - rawStep('replayMs')) / walFiles;
  const comparison = table(
    ['phase', 'pgkeep', 'by hand', 'pgkeep ÷ by hand', 'by hand, step by step'],
    [
      row(
        'base backup → data directory (`zstd -d | tar -x`)',
        m(pg, (run) => run.phases.fetchMs),
        rawStep('extractMs'),
        `pgkeep: sha256 (and decryption) of the stored bytes on the way into zstd, which writes the ${mb(section.baseBackup.tarSize)} of tar into tar's pipe; by hand the same pipe without the hash`,
      ),
      row(
        '**recovery**: WAL fetched and replayed to the point in time, promoted',
        m(pg, (run) => run.phases.recoveryMs),
        m(raw, rawRecovery),
        `by hand: \`zstd -d\` of ${m(raw, (run) => run.walFiles)} segments ${s(rawStep('walMs'))}, postgresql.conf ${s(rawStep('configureMs'))}, postgres to promoted ${s(rawStep('replayMs'))}`,
      ),
      [
        '  replay rate: segment bytes (WAL written) ÷ recovery time',
        `${rate(walBytes, pgRecovery)} (${rate(written, pgRecovery)}); ${walFiles} files, ${mb(walBytes)}`,
        `${rate(rawWalBytes, m(raw, rawRecovery))} (${rate(written, m(raw, rawRecovery))}); ${mb(rawWalBytes)}`,
        '',
        `by hand, postgres to promoted alone: ${rate(rawWalBytes, rawStep('replayMs'))} (${rate(written, rawStep('replayMs'))})`,
      ],
      row(
        'dump of the database (`pg_dump -Fc -Z0 | zstd`)',
        m(pg, (run) => run.phases.dumpMs),
        rawStep('dumpMs'),
        'pgkeep: a backup of the target (row counts in the snapshot, sha256, fsync, manifest)',
      ),
      row(
        'rest of the job / temporary instance stopped, directory removed',
        m(pg, pgkeepOther),
        rawStep('stopMs'),
        "pgkeep: its job's time outside the four phases (locks, window check, scratch directory, instance stop)",
      ),
      row(
        '**restore** into a new database, then the swap',
        m(pg, (run) => run.phases.restoreMs),
        m(raw, rawRestore),
        `by hand: \`zstd -d\` ${s(rawStep('decompressMs'))}, \`createdb\` ${s(rawStep('createdbMs'))}, \`pg_restore -j 2\` ${s(rawStep('restoreMs'))}, swap ${s(rawStep('swapMs'))}`,
      ),
      row(
        '  swap: the database unavailable',
        m(pg, (run) => run.downtimeMs),
        rawStep('swapMs'),
        'pgkeep: `downtimeMs` of its swap; by hand: terminate sessions, `ALTER DATABASE … RENAME` twice',
      ),
      row(
        '**total**',
        m(pg, (run) => run.totalMs),
        m(raw, (run) => run.totalMs),
        `pgkeep: POST → job finished (the job itself ${s(m(pg, (run) => run.durationMs))}); by hand: first step's start → swap done`,
      ),
    ],
  );

  const { load, more, dataset } = section;
  const loadMs = load.ms;
  const archive = table(
    ['under the paced load', 'measured'],
    [
      [
        'writes',
        `${(load.rows / (loadMs / 1000)).toFixed(0)} rows/s inserted (target ${load.rowsPerSecond}), ${(load.updates / (loadMs / 1000)).toFixed(0)} rows/s updated, ${(load.transactions / (loadMs / 1000)).toFixed(0)} transactions/s over ${s(loadMs)}; ${load.lateTicks} of ${Math.round(loadMs / load.tickMs)} ticks late`,
      ],
      ['WAL written (`wal_bytes` of pg_stat_wal)', perMinute(load.walBytes, loadMs)],
      [
        '**archived per minute: WAL bytes** (catalog `walSize`)',
        `${perMinute(load.archived.walBytes, loadMs)} (${((load.archived.segments / loadMs) * 60_000).toFixed(1)} segments/min)`,
      ],
      [
        '**archived per minute: stored bytes** (catalog `size`, zstd)',
        perMinute(load.archived.storedBytes, loadMs),
      ],
      [
        '**lag** at the end of the load (`lagSeconds` of GET …/pitr)',
        load.lagSeconds === null ? '—' : `${load.lagSeconds} s`,
      ],
    ],
  );
  const volume = table(
    ['', ''],
    [
      [
        'dataset',
        `\`${dataset.database}\` at scale ${dataset.scale}: ${(dataset.sizeBytes / 1e9).toFixed(2)} GB (\`pg_database_size\`), ${Object.entries(
          dataset.counts,
        )
          .map(([name, count]) => `${count.toLocaleString('en-US')} ${name}`)
          .join(', ')}`,
      ],
      [
        'base backup (API, `checkpoint: fast`, no verify)',
        `${s(section.baseBackup.ms)}; ${mb(section.baseBackup.size)} stored (tar ${mb(section.baseBackup.tarSize)})`,
      ],
      [
        `more WAL: ${more.minutes} × the load's WAL per minute, unpaced (${more.writers} writers, \`synchronous_commit = off\`)`,
        `${mb(more.walBytes)} (target ${mb(more.targetWalBytes)}) in ${s(more.ms)}: ${more.rows.toLocaleString('en-US')} rows inserted, ${more.updates.toLocaleString('en-US')} updated; a segment switch every ${mb(more.bytesPerSwitch)} of WAL (the load's in ${section.switchWalSeconds} s): ${more.switches} switches`,
      ],
      [
        'WAL from the base backup to the point in time (archived segments)',
        `${section.walUsed.segments} segments: ${mb(section.walUsed.walBytes)} of segment files, ${mb(section.walUsed.storedBytes)} stored; ${mb(written)} of WAL written (pg_stat_wal)`,
      ],
      [
        'point in time',
        `${section.pointInTime}: ${section.rowsAtPoint.toLocaleString('en-US')} messages up to it, ${section.rowsAfterPoint} written after it; both restores held exactly the former (count, max id, none of the later)`,
      ],
    ],
  );
  const loads = [...pg.map((run) => run.load), ...raw.map((run) => run.load ?? Number.NaN)];
  return [
    `_${section.runs === 1 ? 'One restore each way, pgkeep first' : `${section.runs} rounds of a restore each way, pgkeep first; medians`}. Started ${section.startedAt}${section.code ? `, pgkeep at \`${section.code}\`` : ''}, load average at start ${section.loadAverage.join(' / ')} (1/5/15 min)._`,
    '',
    `A PostgreSQL cluster of the section's own (initdb, \`wal_level = replica\`, ${Object.entries(
      section.clusterSettings,
    )
      .map(([name, value]) => `\`${name} = ${value}\``)
      .join(
        ', ',
      )}) holding the panel's dataset; pgkeep's API and worker with a targets file whose server has \`pitr\` (\`checkpoint: fast\`, \`switchWalSeconds: ${section.switchWalSeconds}\`, no schedules) and one target on the database. A base backup through the API, a paced write load (messages inserted, a few updated), more WAL unpaced, then a point in time T by the server's clock after a last known write, a few writes after T, \`pg_switch_wal()\` and a wait for the archive. Then the database restored to T by \`POST /api/targets/:target/restore\` and the same by hand (bench/sections/pitr-raw.ts).`,
    '',
    volume,
    '',
    '#### The WAL archive under the paced load',
    '',
    archive,
    '',
    `Every ${section.switchWalSeconds} s the receiver asks for a segment switch, so under a light load each archived segment is a full 16 MiB file holding a few MB of WAL and zeros: the WAL bytes archived are set by the switch interval, the stored (compressed) bytes by the load. The unpaced writes that follow reproduce ${section.more.minutes} minutes of this archive quickly: the same WAL volume, in about as many segments (a switch asked for after each interval's worth of WAL).`,
    '',
    '#### Restore to a point in time: pgkeep against the same steps by hand',
    '',
    comparison,
    '',
    `pgkeep's phases are its job's own (\`phases\`, \`downtimeMs\`); the temporary instance is fed by pgkeep over a Unix socket, each WAL file's sha256 checked before PostgreSQL gets it, the next two fetched and checked while PostgreSQL replays one. By hand the needed segments are decompressed up front (\`zstd -d --output-dir-flat\`) and \`restore_command\` is \`cp\`. Both start postgres with the same settings (no TCP, \`fsync = off\`, the primary's \`max_*\` from pg_controldata) and poll \`pg_is_in_recovery()\` every 250 ms. Load average (1 min) at each restore: ${loads.map((load) => load.toFixed(1)).join(', ')}.`,
    '',
    `pgkeep's recovery less the by-hand postgres-to-promoted time, per WAL file: ${perFile.toFixed(0)} ms. PostgreSQL asks for one file at a time and replays it before asking for the next; pgkeep's \`restore_command\` is a Node script (\`node wal-fetch.cjs\`) that asks the worker over a Unix socket, which the worker answers from the segments it fetched ahead (a \`zstd -d\` each, hashed and staged), so what is left per file is mostly the script's start and the wait for a segment not staged yet. \`node -e 0\` took ${s(section.nodeStartMs)} (median of 5) after the restores.`,
  ].join('\n');
}
