import { type BackupFormat, pgDumpTablePattern, type QualifiedTable } from '@pgkeep/core';
import { type RunningChild, startChild } from './child-process.js';
import { libpqEnv, type PgTarget } from './connection.js';

export interface PgDumpOptions {
  target: PgTarget;
  format: BackupFormat;
  /** null: the whole database. */
  tables: readonly QualifiedTable[] | null;
  /** Tables a full dump leaves out. */
  excludeTables?: readonly QualifiedTable[] | undefined;
  /** A snapshot exported by another session, so row counts and dump see the same data. */
  snapshot?: string | undefined;
  /** Format `directory`: the directory pg_dump creates and writes (it must not exist yet). */
  directory?: string | undefined;
  /** Format `directory`: parallel jobs, each a connection of its own sharing the snapshot. */
  jobs?: number | undefined;
  signal?: AbortSignal | undefined;
  /** This process reads the archive (to count its rows): pg_dump writes it in 1 MB blocks. */
  readHere?: boolean | undefined;
}

function formatArgs(options: Pick<PgDumpOptions, 'format' | 'directory' | 'jobs'>): string[] {
  // Without pg_dump's own compression: the stream is compressed outside, faster (zstd,
  // multi-threaded) and with the same result for every format.
  if (options.format === 'custom') return ['--format=custom', '--compress=0'];
  if (options.format === 'plain') return ['--format=plain'];
  if (!options.directory) throw new Error('a directory-format dump needs its directory');
  return [
    '--format=directory',
    '--compress=0',
    `--jobs=${Math.max(1, Math.floor(options.jobs ?? 1))}`,
    `--file=${options.directory}`,
  ];
}

export function pgDumpArgs(options: Omit<PgDumpOptions, 'target' | 'signal'>): string[] {
  const args = formatArgs(options);
  args.push('--no-password');
  if (options.snapshot) args.push(`--snapshot=${options.snapshot}`);
  if (options.tables) {
    // --strict-names: a pattern that matches nothing is an error, never an empty dump.
    args.push('--strict-names');
    for (const table of options.tables) args.push(`--table=${pgDumpTablePattern(table)}`);
  }
  for (const table of options.excludeTables ?? []) {
    args.push(`--exclude-table=${pgDumpTablePattern(table)}`);
  }
  return args;
}

/** Starts pg_dump writing the archive to its stdout (to `directory`, in that format). */
export function startPgDump(options: PgDumpOptions): RunningChild {
  return startChild('pg_dump', pgDumpArgs(options), {
    env: libpqEnv(options.target, { PATH: process.env.PATH }),
    signal: options.signal,
    stdoutBuffer: options.readHere ? '1M' : undefined,
  });
}
