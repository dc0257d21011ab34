import { type ChildProcess, spawn } from 'node:child_process';
import { chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { pgTool } from '../../test/support/pg-cluster.js';
import type { PitrRawRun } from '../lib/results.js';
import { runPipeline, runTool } from '../lib/tools.js';
import { sleep } from '../lib/util.js';

/**
 * The same point-in-time restore by hand, with the raw tools, as an operator would script it:
 * `zstd -d | tar -x` of the base backup, `zstd -d` of the archived segments it needs, a
 * postgresql.conf like pgkeep's with `restore_command = 'cp …'`, postgres until promoted,
 * `pg_dump -Fc -Z0 | zstd`, then `createdb`, `pg_restore -j 2` and two renames. Each step timed.
 */

export interface RawPitrInput {
  /** The base backup artifact (`basebackup-<id>.tar.zst`). */
  artifact: string;
  /** The archived segments the recovery needs, in WAL order (`<name>.zst`). */
  segments: { name: string; file: string; walSize: number }[];
  pointInTime: string;
  database: string;
  /** The live cluster the restore goes to. */
  live: { host: string; port: number; user: string };
  /** A directory the postgres OS user can enter (mode 0711). */
  scratchRoot: string;
}

const isRoot = process.getuid?.() === 0;
const asPostgres = isRoot ? ['--reuid', 'postgres', '--regid', 'postgres', '--init-groups'] : [];

async function postgresIds(): Promise<{ uid: number; gid: number }> {
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  const uid = Number((await runTool('id', ['-u', 'postgres'], env)).trim());
  const gid = Number((await runTool('id', ['-g', 'postgres'], env)).trim());
  return { uid, gid };
}

function liveEnv(live: RawPitrInput['live'], database: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    LANG: 'C.UTF-8',
    PGHOST: live.host,
    PGPORT: String(live.port),
    PGUSER: live.user,
    PGDATABASE: database,
  };
}

const quote = (value: string) => `'${value.replaceAll("'", "''")}'`;

/** pg_controldata's "<name> setting:" values. */
async function controlSettings(dataDir: string): Promise<Record<string, string>> {
  const out = await runTool(pgTool('pg_controldata'), ['-D', dataDir], {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    LANG: 'C',
    LC_ALL: 'C',
  });
  const settings: Record<string, string> = {};
  for (const line of out.split('\n')) {
    const match = /^(.+) setting:\s*(.*)$/.exec(line);
    if (match?.[1] && match[2] !== undefined) settings[match[1].trim()] = match[2].trim();
  }
  return settings;
}

/** pgkeep's settings for its temporary instance, with `cp` as the restore_command. */
function recoveryConf(dir: string, walDir: string, control: Record<string, string>, at: string) {
  const value = (key: string, fallback: string) => control[key] ?? fallback;
  return `${[
    `listen_addresses = ''`,
    'port = 5432',
    `unix_socket_directories = ${quote(dir)}`,
    `hba_file = ${quote(path.join(dir, 'pg_hba.conf'))}`,
    `ident_file = ${quote(path.join(dir, 'pg_ident.conf'))}`,
    `max_connections = ${value('max_connections', '100')}`,
    `max_worker_processes = ${value('max_worker_processes', '8')}`,
    `max_wal_senders = ${value('max_wal_senders', '10')}`,
    `max_prepared_transactions = ${value('max_prepared_xacts', '0')}`,
    `max_locks_per_transaction = ${value('max_locks_per_xact', '64')}`,
    `shared_buffers = '64MB'`,
    `maintenance_work_mem = '64MB'`,
    `max_wal_size = '1GB'`,
    'fsync = off',
    'synchronous_commit = off',
    'full_page_writes = off',
    'autovacuum = off',
    'archive_mode = off',
    `restore_command = ${quote(`cp ${walDir}/%f %p`)}`,
    `recovery_target_time = ${quote(at.replace('T', ' ').replace(/Z$/, '+00'))}`,
    'recovery_target_inclusive = on',
    `recovery_target_action = 'promote'`,
  ].join('\n')}\n`;
}

/** Polls the instance until `pg_is_in_recovery()` is false; fails if postgres exits first. */
async function waitForPromotion(socketDir: string, postmaster: ChildProcess, stderr: () => string) {
  const deadline = Date.now() + 3 * 3600_000;
  for (;;) {
    if (postmaster.exitCode !== null || postmaster.signalCode !== null) {
      throw new Error(`postgres stopped during recovery: ${stderr().slice(-2000)}`);
    }
    const client = new pg.Client({
      host: socketDir,
      port: 5432,
      user: 'postgres',
      database: 'postgres',
    });
    client.on('error', () => {});
    try {
      await client.connect();
      const { rows } = await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
      if (rows[0]?.r === false) return;
    } catch {
      // Starting, or not consistent yet.
    } finally {
      await client.end().catch(() => {});
    }
    if (Date.now() > deadline) throw new Error('recovery did not end in time');
    await sleep(250);
  }
}

async function timed<T>(steps: Record<string, number>, name: string, work: () => Promise<T>) {
  const started = performance.now();
  const value = await work();
  steps[name] = performance.now() - started;
  return value;
}

/** The restore by hand; the database it replaced is renamed `<db>_raw_old` (the caller drops it). */
export async function rawPitrRestore(input: RawPitrInput): Promise<PitrRawRun & { old: string }> {
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8' };
  const ids = await postgresIds();
  const dir = await mkdtemp(path.join(input.scratchRoot, 'raw-'));
  const dataDir = path.join(dir, 'data');
  const walDir = path.join(dir, 'wal');
  const dumpFile = path.join(dir, 'dump.zst');
  const restoreFile = path.join(dir, 'dump');
  const fresh = `${input.database}_raw_new`;
  const old = `${input.database}_raw_old`;
  const steps: Record<string, number> = {};
  let postmaster: ChildProcess | undefined;
  let stderr = '';
  const started = performance.now();
  try {
    await mkdir(dataDir, { mode: 0o700 });
    await mkdir(walDir, { mode: 0o755 });
    if (isRoot) {
      await chown(dir, ids.uid, ids.gid);
      await chown(dataDir, ids.uid, ids.gid);
    }
    await timed(steps, 'extractMs', () =>
      runPipeline(
        [
          { command: 'zstd', args: ['-d', '-q', '-c', input.artifact] },
          {
            command: 'setpriv',
            args: [...asPostgres, '--', 'tar', '-x', '-f', '-', '-C', dataDir],
          },
        ],
        { env },
      ),
    );
    await timed(steps, 'walMs', async () => {
      await runTool(
        'zstd',
        ['-d', '-q', '-f', '--output-dir-flat', walDir, ...input.segments.map((s) => s.file)],
        env,
      );
      // zstd keeps the archived files' mode (0600): the server's user must read them.
      if (isRoot) await runTool('chown', ['-R', `${ids.uid}:${ids.gid}`, walDir], env);
    });
    await timed(steps, 'configureMs', async () => {
      for (const file of ['standby.signal', 'postmaster.pid']) {
        await rm(path.join(dataDir, file), { force: true });
      }
      // The primary's ALTER SYSTEM settings must not come along.
      await writeFile(path.join(dataDir, 'postgresql.auto.conf'), '');
      const control = await controlSettings(dataDir);
      await writeFile(
        path.join(dir, 'postgresql.conf'),
        recoveryConf(dir, walDir, control, input.pointInTime),
      );
      await writeFile(path.join(dir, 'pg_hba.conf'), 'local all all trust\n');
      await writeFile(path.join(dir, 'pg_ident.conf'), '');
      await writeFile(path.join(dataDir, 'recovery.signal'), '');
      if (isRoot) {
        for (const file of ['postgresql.conf', 'pg_hba.conf', 'pg_ident.conf']) {
          await chown(path.join(dir, file), ids.uid, ids.gid);
        }
        for (const file of ['recovery.signal', 'postgresql.auto.conf']) {
          await chown(path.join(dataDir, file), ids.uid, ids.gid);
        }
      }
    });
    await timed(steps, 'replayMs', async () => {
      postmaster = spawn(
        'setpriv',
        [
          ...asPostgres,
          '--pdeathsig',
          'SIGKILL',
          '--',
          pgTool('postgres'),
          '-D',
          dataDir,
          '-c',
          `config_file=${path.join(dir, 'postgresql.conf')}`,
        ],
        { env: { ...env, LC_MESSAGES: 'C' }, stdio: ['ignore', 'ignore', 'pipe'], cwd: dir },
      );
      postmaster.stderr?.setEncoding('utf8');
      postmaster.stderr?.on('data', (chunk: string) => {
        stderr = (stderr + chunk).slice(-16_384);
      });
      await waitForPromotion(dir, postmaster, () => stderr);
    });
    await timed(steps, 'dumpMs', () =>
      runPipeline(
        [
          {
            command: 'pg_dump',
            args: ['-Fc', '-Z0', '-h', dir, '-p', '5432', '-U', 'postgres', input.database],
          },
          { command: 'zstd', args: ['-3', '-T0', '-q', '-c'] },
        ],
        { env, stdoutFile: dumpFile },
      ),
    );
    await timed(steps, 'stopMs', async () => {
      await stopPostmaster(postmaster);
      await rm(dataDir, { recursive: true, force: true });
      await rm(walDir, { recursive: true, force: true });
    });
    const live = liveEnv(input.live, 'postgres');
    await timed(steps, 'decompressMs', () =>
      runTool('zstd', ['-d', '-q', '-f', dumpFile, '-o', restoreFile], env),
    );
    await runTool('dropdb', ['--if-exists', fresh], live);
    await timed(steps, 'createdbMs', () => runTool('createdb', ['-T', 'template0', fresh], live));
    await timed(steps, 'restoreMs', () =>
      runTool('pg_restore', ['--exit-on-error', '-j', '2', '-d', fresh, restoreFile], live),
    );
    await runTool('dropdb', ['--if-exists', old], live);
    await timed(steps, 'swapMs', () => swap(input.live, input.database, fresh, old));
    const totalMs = performance.now() - started;
    return {
      totalMs,
      steps,
      walFiles: input.segments.length,
      walBytes: input.segments.reduce((sum, s) => sum + s.walSize, 0),
      old,
    };
  } finally {
    await stopPostmaster(postmaster).catch(() => {});
    await rm(dir, { recursive: true, force: true });
    await runTool('dropdb', ['--if-exists', fresh], liveEnv(input.live, 'postgres')).catch(
      () => {},
    );
  }
}

async function stopPostmaster(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // SIGINT: PostgreSQL's fast shutdown.
  child.kill('SIGINT');
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}

/** Sessions of the database ended, then `ALTER DATABASE … RENAME` twice. */
async function swap(live: RawPitrInput['live'], database: string, fresh: string, old: string) {
  const client = new pg.Client({
    host: live.host,
    port: live.port,
    user: live.user,
    database: 'postgres',
  });
  client.on('error', () => {});
  await client.connect();
  const id = (name: string) => `"${name.replaceAll('"', '""')}"`;
  try {
    await client.query(
      'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
      [database],
    );
    await client.query(`ALTER DATABASE ${id(database)} RENAME TO ${id(old)}`);
    await client.query(`ALTER DATABASE ${id(fresh)} RENAME TO ${id(database)}`);
  } finally {
    await client.end().catch(() => {});
  }
}
