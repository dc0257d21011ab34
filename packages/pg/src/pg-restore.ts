import { type RunningChild, runChild, startChild } from './child-process.js';
import { libpqEnv, type PgTarget, type SessionSettings } from './connection.js';

/** The environment of pg_restore and psql: the target's connection and `settings`. */
export function restoreToolEnv(target: PgTarget, settings?: SessionSettings): NodeJS.ProcessEnv {
  return libpqEnv(target, { PATH: process.env.PATH }, settings);
}

/** Entries of an archive's table of contents: the denominator of a restore's percentage. */
export async function countArchiveEntries(file: string, target: PgTarget): Promise<number> {
  const list = await runChild('pg_restore', ['--list', file], { env: restoreToolEnv(target) });
  return list.split('\n').filter((line) => line.trim() !== '' && !line.startsWith(';')).length;
}

export interface PgRestoreOptions {
  /** Database to restore into (connection settings from the target, name from here). */
  target: PgTarget;
  /** A seekable archive file (parallel restore needs one). */
  file: string;
  jobs: number;
  signal?: AbortSignal | undefined;
  /** Called once per archive entry processed. */
  onEntry?: (() => void) | undefined;
  /**
   * Called with an entry's dump id once a parallel restore (jobs > 1) has finished it: its
   * work is committed. pg_restore -j 1 names no finished entries.
   */
  onItemFinished?: ((dumpId: number) => void) | undefined;
  /** Settings of every session pg_restore opens (one per job). */
  settings?: SessionSettings | undefined;
}

export function pgRestoreArgs(options: { file: string; jobs: number; database: string }): string[] {
  return [
    '--exit-on-error',
    '--no-password',
    '--verbose',
    `--jobs=${Math.max(1, Math.floor(options.jobs))}`,
    // A database name only; host, user and password come through the environment.
    `--dbname=${options.database}`,
    options.file,
  ];
}

/** pg_restore --verbose announces each entry it processes on its own line. */
const entryLine = /^pg_restore: (creating|processing|launching|finished item|executing)/;
/** The parallel leader's "finished item <dump id> <desc> <tag>" (the tag is not quoted). */
const finishedItemLine = /^pg_restore: finished item (\d+) /;

export function startPgRestore(options: PgRestoreOptions): RunningChild {
  return startChild(
    'pg_restore',
    pgRestoreArgs({ ...options, database: options.target.database }),
    {
      env: restoreToolEnv(options.target, options.settings),
      signal: options.signal,
      onStderrLine: (line) => {
        if (entryLine.test(line)) options.onEntry?.();
        const finished = finishedItemLine.exec(line);
        if (finished) options.onItemFinished?.(Number(finished[1]));
        // --verbose chatter is progress; "pg_restore: error: …" and what follows stay in the
        // stderr tail that a failure reports.
        return (
          line.startsWith('pg_restore: ') &&
          !line.startsWith('pg_restore: error') &&
          !line.startsWith('pg_restore: warning')
        );
      },
    },
  );
}

/**
 * psql reading SQL from stdin, all in one transaction, stopping at the first error. Query
 * results go to /dev/null: nothing reads them, and a full pipe would stall psql. `variables`
 * are psql variables that the script reads as `:'name'` (psql quotes each as a literal);
 * `after` is constant SQL run once stdin is done; `settings` are the session's.
 */
export function startPsqlScript(
  target: PgTarget,
  options: {
    variables?: Record<string, string>;
    after?: string[];
    signal?: AbortSignal | undefined;
    settings?: SessionSettings | undefined;
  },
): RunningChild {
  const args = ['-X', '-q', '--no-password', '-v', 'ON_ERROR_STOP=1', '--single-transaction'];
  args.push('--output=/dev/null');
  for (const [name, value] of Object.entries(options.variables ?? {})) {
    args.push('-v', `${name}=${value}`);
  }
  args.push('-f', '-');
  for (const command of options.after ?? []) args.push('-c', command);
  return startChild('psql', args, {
    env: restoreToolEnv(target, options.settings),
    signal: options.signal,
    stdin: 'pipe',
  });
}

/** pg_restore writing an archive back out as SQL, to stdout, from stdin or a file. */
export function startPgRestoreToScript(
  target: PgTarget,
  options: { clean: boolean; signal?: AbortSignal | undefined; file?: string },
): RunningChild {
  const args = ['--file=-', '--exit-on-error'];
  if (options.clean) args.push('--clean', '--if-exists');
  if (options.file) args.push(options.file);
  return startChild('pg_restore', args, {
    env: restoreToolEnv(target),
    signal: options.signal,
    stdin: options.file ? 'ignore' : 'pipe',
  });
}
