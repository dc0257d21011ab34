import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  AppError,
  type ArchivedWal,
  type BaseBackupManifest,
  type Logger,
  toAppError,
} from '@pgkeep/core';
import { findPgProgram, runChild, startChild } from '@pgkeep/pg';
import pg from 'pg';
import type { WalArchive } from './wal-archive.js';
import { parseSegmentName, segmentName } from './wal-position.js';

/** The OS user a temporary instance runs as (postgres refuses to run as root). */
export interface InstanceUser {
  name: string;
  uid: number;
  gid: number;
}

/** The user named by PITR_INSTANCE_USER, or this process's own user when it is not root. */
export async function instanceUser(configured: string | undefined): Promise<InstanceUser> {
  const self = os.userInfo();
  const name = configured ?? (self.uid === 0 ? 'postgres' : self.username);
  if (self.uid !== 0 && name !== self.username) {
    throw new AppError(
      'PITR_UNAVAILABLE',
      `PITR_INSTANCE_USER is ${name}, but only a worker running as root can start a process as another user`,
    );
  }
  if (name === self.username && self.uid !== 0) return { name, uid: self.uid, gid: self.gid };
  try {
    const env = { PATH: process.env.PATH };
    const uid = Number((await runChild('id', ['-u', name], { env })).trim());
    const gid = Number((await runChild('id', ['-g', name], { env })).trim());
    if (uid === 0) throw new Error('root');
    return { name, uid, gid };
  } catch {
    throw new AppError(
      'PITR_UNAVAILABLE',
      `the temporary PostgreSQL instance runs as OS user ${name}, and there is no such (non-root) user: create it or set PITR_INSTANCE_USER`,
    );
  }
}

const SCRATCH_PREFIX = 'pgkeep-pitr-scratch-';
/** Written once the restore holds the directory's lock: only marked directories are swept. */
const MARKER = 'pgkeep-scratch.json';

/** Every directory above the scratch directory must let the instance's user through. */
async function assertTraversable(dir: string, user: InstanceUser): Promise<void> {
  if (process.getuid?.() !== 0) return;
  for (let current = dir; ; current = path.dirname(current)) {
    const stat = await fs.stat(current);
    const mode = stat.mode;
    const through =
      stat.uid === user.uid ? mode & 0o100 : stat.gid === user.gid ? mode & 0o010 : mode & 0o001;
    if (!through) {
      throw new AppError(
        'PITR_UNAVAILABLE',
        `OS user ${user.name}, who runs the temporary instance, cannot enter ${current}: set PITR_SCRATCH_DIR to a directory it can reach (e.g. /var/tmp/pgkeep)`,
      );
    }
    if (path.dirname(current) === current) return;
  }
}
/** The advisory lock a restore holds while its scratch directory exists. */
export const scratchLockResource = (dir: string) => `pitr-scratch:${path.basename(dir)}`;

/** Removes a chown'd tree as root, or as its own user. */
async function chownTree(dir: string, user: InstanceUser): Promise<void> {
  if (process.getuid?.() !== 0) return;
  await runChild('chown', ['-R', `${user.uid}:${user.gid}`, dir], {
    env: { PATH: process.env.PATH },
  });
}

/**
 * The restore_command: asks the worker (over a Unix socket in the scratch directory) for one
 * WAL file. The worker fetches it from the archive, checks its sha256 and stages it; this moves
 * it into place. Exit 1 says "no such file" (the end of the archive, or a timeline history file
 * that does not exist: recovery goes on); exit 127 makes PostgreSQL stop the recovery (a file
 * that failed its checksum, or a worker that went away).
 */
const FETCH_SCRIPT = `'use strict';
const fs = require('node:fs');
const net = require('node:net');
const [socket, name, target] = process.argv.slice(2);
let answer = '';
const connection = net.connect(socket, () => connection.write(name + '\\n'));
connection.setEncoding('utf8');
connection.on('data', (chunk) => { answer += chunk; });
connection.on('error', () => process.exit(127));
connection.on('close', () => {
  const [status, staged] = answer.split('\\n');
  if (status === 'F' && staged) {
    try { fs.renameSync(staged, target); process.exit(0); } catch { process.exit(127); }
  }
  process.exit(status === 'N' ? 1 : 127);
});
`;

export interface FetchStats {
  files: number;
  bytes: number;
  /** Segments served so far, in the order PostgreSQL asked. */
  served: string[];
}

/**
 * Serves the archive's WAL to one recovering instance. Every file is read from its first good
 * copy, decrypted and decompressed, and its sha256 compared with the catalog before PostgreSQL
 * sees a byte of it. A mismatch stops the recovery and is kept as the reason.
 */
class WalFetchServer {
  readonly stats: FetchStats = { files: 0, bytes: 0, served: [] };
  failure: AppError | undefined;
  private readonly server: net.Server;

  constructor(
    private readonly archive: WalArchive,
    private readonly catalog: Map<string, ArchivedWal>,
    private readonly stageDir: string,
    private readonly user: InstanceUser,
    private readonly logger: Logger,
    private readonly onServed: (name: string) => void,
  ) {
    this.server = net.createServer((socket) => {
      let request = '';
      socket.setEncoding('utf8');
      socket.on('error', () => {});
      socket.on('data', (chunk: string) => {
        request += chunk;
        const newline = request.indexOf('\n');
        if (newline === -1) return;
        const name = request.slice(0, newline);
        void this.serve(name).then((answer) => socket.end(answer));
      });
    });
  }

  listen(socketPath: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(socketPath, () => resolve());
    });
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await Promise.allSettled(this.ahead.values());
  }

  /** Segments fetched, checked and staged ahead of PostgreSQL's request for them. */
  private readonly ahead = new Map<string, Promise<{ staged: string; size: number }>>();
  private readonly taken = new Set<string>();

  /**
   * While PostgreSQL replays one segment, the next ones are fetched and checked: recovery asks
   * for one file at a time and waits for each.
   */
  private fetchAhead(name: string): void {
    const entry = this.catalog.get(name);
    if (!entry || !/^[0-9A-F]{24}$/.test(name)) return;
    const { timeline, segno } = parseSegmentName(name, entry.walSize);
    for (let step = 1n; step <= FETCH_AHEAD; step += 1n) {
      const next = segmentName(timeline, segno + step, entry.walSize);
      const nextEntry = this.catalog.get(next);
      if (!nextEntry) return;
      if (this.ahead.has(next) || this.taken.has(next)) continue;
      const staging = this.stage(next, nextEntry);
      staging.catch(() => {});
      this.ahead.set(next, staging);
    }
  }

  /** One WAL file from the archive into the stage directory, its sha256 and size checked. */
  private async stage(name: string, entry: ArchivedWal): Promise<{ staged: string; size: number }> {
    const staged = path.join(this.stageDir, `${name}.${randomBytes(4).toString('hex')}`);
    try {
      const hash = createHash('sha256');
      let size = 0;
      const tap = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          hash.update(chunk);
          size += chunk.length;
          callback(null, chunk);
        },
      });
      const source: Readable = await this.archive.openWal(entry);
      await pipeline(source, tap, createWriteStream(staged, { mode: 0o600 }));
      const sha256 = hash.digest('hex');
      if (sha256 !== entry.walSha256 || size !== entry.walSize) {
        throw new AppError(
          'CHECKSUM_MISMATCH',
          `WAL file ${name} from the archive does not match its checksum (sha256 ${sha256}, the catalog says ${entry.walSha256}): the recovery stopped, nothing was changed`,
        );
      }
      if (process.getuid?.() === 0) await fs.chown(staged, this.user.uid, this.user.gid);
      return { staged, size };
    } catch (error) {
      await fs.rm(staged, { force: true });
      throw error;
    }
  }

  private async serve(name: string): Promise<string> {
    if (!/^[0-9A-F]{24}$|^[0-9A-F]{8}\.history$/.test(name)) return 'N\n';
    const entry = this.catalog.get(name);
    if (!entry) return 'N\n';
    const staging = this.ahead.get(name) ?? this.stage(name, entry);
    this.ahead.delete(name);
    try {
      const { staged, size } = await staging;
      this.taken.add(name);
      this.stats.files += 1;
      this.stats.bytes += size;
      this.stats.served.push(name);
      this.onServed(name);
      this.fetchAhead(name);
      return `F\n${staged}\n`;
    } catch (error) {
      this.failure ??= toAppError(error);
      this.logger.error({ wal: name, err: this.failure.message }, 'WAL file not served');
      return 'E\n';
    }
  }
}

/** Segments fetched ahead of the one PostgreSQL replays. */
const FETCH_AHEAD = 2n;

/** pg_controldata's "<name> setting:" lines: what the instance must match or exceed. */
async function controlSettings(binDir: string, dataDir: string): Promise<Record<string, string>> {
  const output = await runChild(path.join(binDir, 'pg_controldata'), ['-D', dataDir], {
    env: { PATH: process.env.PATH, LANG: 'C', LC_ALL: 'C' },
  });
  const settings: Record<string, string> = {};
  for (const line of output.split('\n')) {
    const match = /^([^:]+):\s*(.*)$/.exec(line);
    if (match?.[1] && match[2] !== undefined) settings[match[1].trim()] = match[2].trim();
  }
  return settings;
}

const quote = (value: string) => `'${value.replace(/'/g, "''")}'`;

/**
 * An RFC 3339 time as recovery_target_time reads it: PostgreSQL's parser there takes neither the
 * `T` nor `Z`. The digits are kept as given (microseconds included).
 */
export function recoveryTargetTime(rfc3339: string): string {
  return rfc3339.replace('T', ' ').replace(/[zZ]$/, '+00');
}

export interface RecoveryTarget {
  /** ISO time to stop at; null: replay all the WAL there is. */
  time: string | null;
}

export interface RecoveryProgress {
  replayLsn: string | null;
  replayedAt: string | null;
}

/**
 * A PostgreSQL instance of the worker's own, recovered from a base backup and the archive:
 * no TCP listener (a Unix socket in its scratch directory only), small memory settings,
 * the primary's limits where recovery requires them, restore_command served by the worker,
 * a recovery target and `promote` at it. It runs as a non-root user, dies with its worker
 * (SIGKILL on the worker's death), and its scratch directory goes when it stops.
 */
export class TemporaryInstance {
  readonly dataDir: string;
  readonly socketDir: string;
  private postmaster: ReturnType<typeof spawn> | undefined;
  private exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | undefined;
  private logTail = '';
  private fetchServer: WalFetchServer | undefined;
  readonly port = 5432;

  private constructor(
    readonly dir: string,
    private readonly user: InstanceUser,
    private readonly binDir: string,
    private readonly logger: Logger,
  ) {
    this.dataDir = path.join(dir, 'data');
    this.socketDir = dir;
  }

  /** A fresh scratch directory under `scratchRoot`, owned by the instance's user. */
  static async create(
    scratchRoot: string,
    user: InstanceUser,
    major: number,
    logger: Logger,
  ): Promise<TemporaryInstance> {
    const postgres = findPgProgram('postgres', major);
    if (!postgres || !findPgProgram('pg_controldata', major)) {
      throw new AppError(
        'PITR_UNAVAILABLE',
        `a point-in-time restore needs the PostgreSQL ${major} server programs (postgres, pg_controldata) on this worker: install postgresql-${major}`,
      );
    }
    await fs.mkdir(scratchRoot, { recursive: true });
    await assertTraversable(path.resolve(scratchRoot), user);
    const dir = await fs.mkdtemp(path.join(scratchRoot, SCRATCH_PREFIX));
    // A Unix socket path is at most 107 bytes.
    if (path.join(dir, '.s.PGSQL.5432').length > 100) {
      await fs.rm(dir, { recursive: true, force: true });
      throw new AppError(
        'PITR_UNAVAILABLE',
        `PITR_SCRATCH_DIR ${scratchRoot} is too long a path for a Unix socket: choose a shorter one`,
      );
    }
    await fs.chmod(dir, 0o700);
    await fs.mkdir(path.join(dir, 'data'), { mode: 0o700 });
    await fs.mkdir(path.join(dir, 'stage'), { mode: 0o700 });
    return new TemporaryInstance(dir, user, path.dirname(postgres), logger);
  }

  /**
   * Says whose directory this is (the deployment's lock namespace), once the restore holds its
   * lock: a sweep removes only directories marked by its own deployment whose lock is free.
   */
  async mark(namespace: string): Promise<void> {
    await fs.writeFile(
      path.join(this.dir, MARKER),
      `${JSON.stringify({ namespace, hostname: os.hostname(), pid: process.pid })}\n`,
    );
  }

  /** Extracts the base backup (its sha256 checked on the way) into the data directory. */
  async extract(
    stored: Readable,
    manifest: BaseBackupManifest,
    decrypt: Transform | null,
    signal?: AbortSignal,
  ) {
    const hash = createHash('sha256');
    const tap = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        hash.update(chunk);
        callback(null, chunk);
      },
    });
    // zstd writes straight into tar's pipe: the decompressed cluster never passes through
    // this process, only the stored bytes do (hashed and decrypted on the way).
    const unzstd = startChild('zstd', ['-d', '-c', '-q'], {
      env: { PATH: process.env.PATH },
      signal,
      stdin: 'pipe',
    });
    const { stdin, stdout } = unzstd.child;
    if (!stdin || !stdout) throw new Error('zstd was started without pipes');
    const untar = startChild('tar', ['--extract', '--file', '-', '--directory', this.dataDir], {
      env: { PATH: process.env.PATH },
      signal,
      stdin: stdout,
    });
    // tar has its own copy of the pipe; ours must go, or the pipe would have two readers.
    stdout.destroy();
    const stages = [stored, tap, ...(decrypt ? [decrypt] : []), stdin];
    await Promise.all([
      pipeline(stages as unknown as [Readable, Transform]),
      unzstd.done,
      untar.done,
    ]);
    const sha256 = hash.digest('hex');
    if (sha256 !== manifest.sha256) {
      throw new AppError(
        'CHECKSUM_MISMATCH',
        `base backup ${manifest.id} does not match its checksum: nothing was changed`,
      );
    }
  }

  /** The whole configuration of the instance, and recovery.signal. */
  async configure(restore: { target: RecoveryTarget; socket: string; script: string }) {
    const tablespaceMap = await fs
      .readFile(path.join(this.dataDir, 'tablespace_map'), 'utf8')
      .catch(() => '');
    if (tablespaceMap.trim() !== '') {
      throw new AppError(
        'PITR_UNAVAILABLE',
        'the base backup has tablespaces other than the default ones: a point-in-time restore of it is not supported',
      );
    }
    // The primary's own settings must not come along (ports, archive commands, preloads).
    for (const file of [
      'postgresql.auto.conf',
      'standby.signal',
      'recovery.signal',
      'postmaster.pid',
    ]) {
      await fs.rm(path.join(this.dataDir, file), { force: true });
    }
    const control = await controlSettings(this.binDir, this.dataDir);
    const at = (key: string, fallback: string) => control[`${key} setting`] ?? fallback;
    const primaryWalLevel = at('wal_level', 'replica');
    const restoreCommand = [process.execPath, restore.script, restore.socket, '%f', '%p']
      .map((part) => (part.startsWith('%') ? part : `"${part}"`))
      .join(' ');
    const lines = [
      `listen_addresses = ''`,
      `port = ${this.port}`,
      `unix_socket_directories = ${quote(this.socketDir)}`,
      `unix_socket_permissions = 0700`,
      `hba_file = ${quote(path.join(this.dir, 'pg_hba.conf'))}`,
      `ident_file = ${quote(path.join(this.dir, 'pg_ident.conf'))}`,
      // Recovery refuses to start below the primary's values of these.
      `max_connections = ${at('max_connections', '100')}`,
      `max_worker_processes = ${at('max_worker_processes', '8')}`,
      `max_wal_senders = ${at('max_wal_senders', '10')}`,
      `max_prepared_transactions = ${at('max_prepared_xacts', '0')}`,
      `max_locks_per_transaction = ${at('max_locks_per_xact', '64')}`,
      `wal_level = ${primaryWalLevel === 'logical' ? 'logical' : 'replica'}`,
      `shared_buffers = '64MB'`,
      `maintenance_work_mem = '64MB'`,
      `max_wal_size = '1GB'`,
      // A throwaway copy: nothing it writes must survive a crash of this host.
      `fsync = off`,
      `synchronous_commit = off`,
      `full_page_writes = off`,
      `autovacuum = off`,
      `archive_mode = off`,
      `shared_preload_libraries = ''`,
      `hot_standby = on`,
      `logging_collector = off`,
      `log_destination = 'stderr'`,
      `restore_command = ${quote(restoreCommand)}`,
      `recovery_target_timeline = 'latest'`,
      ...(restore.target.time
        ? [
            `recovery_target_time = ${quote(recoveryTargetTime(restore.target.time))}`,
            `recovery_target_inclusive = on`,
            `recovery_target_action = 'promote'`,
          ]
        : []),
    ];
    await fs.writeFile(path.join(this.dir, 'postgresql.conf'), `${lines.join('\n')}\n`);
    await fs.writeFile(path.join(this.dir, 'pg_hba.conf'), 'local all all trust\n');
    await fs.writeFile(path.join(this.dir, 'pg_ident.conf'), '');
    await fs.writeFile(path.join(this.dataDir, 'postgresql.auto.conf'), '');
    await fs.writeFile(path.join(this.dataDir, 'recovery.signal'), '');
    await fs.writeFile(restore.script, FETCH_SCRIPT);
    await fs.chmod(this.dataDir, 0o700);
    await chownTree(this.dir, this.user);
  }

  /** Starts the fetch server and postgres, under the instance's user, dying with this process. */
  async start(
    archive: WalArchive,
    catalog: Map<string, ArchivedWal>,
    onServed: (name: string) => void,
  ): Promise<void> {
    const socket = path.join(this.dir, 'wal-fetch.sock');
    this.fetchServer = new WalFetchServer(
      archive,
      catalog,
      path.join(this.dir, 'stage'),
      this.user,
      this.logger,
      onServed,
    );
    await this.fetchServer.listen(socket);
    if (process.getuid?.() === 0) await fs.chown(socket, this.user.uid, this.user.gid);
    this.startPostmaster();
  }

  /** postgres under the instance's user, dying with this process (SIGKILL on its death). */
  startPostmaster(): void {
    this.logTail = '';
    const postgres = path.join(this.binDir, 'postgres');
    const args = [
      '-D',
      this.dataDir,
      '-c',
      `config_file=${path.join(this.dir, 'postgresql.conf')}`,
    ];
    const asUser =
      process.getuid?.() === 0
        ? ['--reuid', String(this.user.uid), '--regid', String(this.user.gid), '--init-groups']
        : [];
    const setpriv = findPgProgram('setpriv') ?? '/usr/bin/setpriv';
    this.postmaster = spawn(
      setpriv,
      [...asUser, '--pdeathsig', 'SIGKILL', '--', postgres, ...args],
      {
        env: { PATH: process.env.PATH, LANG: 'C.UTF-8', LC_MESSAGES: 'C', PGTZ: 'UTC' },
        stdio: ['ignore', 'ignore', 'pipe'],
        cwd: this.dir,
      },
    );
    this.postmaster.stderr?.setEncoding('utf8');
    this.postmaster.stderr?.on('data', (chunk: string) => {
      this.logTail = (this.logTail + chunk).slice(-16_384);
    });
    this.exited = new Promise((resolve) => {
      this.postmaster?.once('exit', (code, signal) => resolve({ code, signal }));
    });
    this.logger.info({ pid: this.postmaster.pid, dir: this.dir }, 'temporary instance started');
  }

  get pid(): number | undefined {
    return this.postmaster?.pid;
  }

  get fetchFailure(): AppError | undefined {
    return this.fetchServer?.failure;
  }

  get fetchStats(): FetchStats {
    return this.fetchServer?.stats ?? { files: 0, bytes: 0, served: [] };
  }

  /** The server's own lines about why it stopped (FATAL, PANIC, recovery messages). */
  reason(): string {
    const lines = this.logTail
      .split('\n')
      .filter((line) => /FATAL|PANIC|ERROR|recovery/i.test(line))
      .slice(-6);
    return lines.join(' | ').slice(0, 2000) || this.logTail.slice(-500);
  }

  connection(user: string, database = 'postgres') {
    return { host: this.socketDir, port: this.port, user, database };
  }

  /**
   * Polls until recovery ended and the instance was promoted; rejects with the server's reason
   * when postgres stops first (a target it cannot reach, WAL that failed its checksum).
   */
  async waitForPromotion(
    user: string,
    signal: AbortSignal | undefined,
    onProgress: (progress: RecoveryProgress) => void,
  ): Promise<RecoveryProgress> {
    let last: RecoveryProgress = { replayLsn: null, replayedAt: null };
    let stopped = false;
    void this.exited?.then(() => {
      stopped = true;
    });
    for (;;) {
      signal?.throwIfAborted();
      if (stopped) {
        throw (
          this.fetchFailure ??
          new AppError(
            'PITR_RECOVERY_FAILED',
            `the temporary instance stopped before recovery reached its target: ${this.reason()}`,
          )
        );
      }
      const client = new pg.Client({ ...this.connection(user), connectionTimeoutMillis: 5_000 });
      client.on('error', () => {});
      try {
        await client.connect();
        const { rows } = await client.query<{
          recovering: boolean;
          lsn: string | null;
          at: Date | null;
        }>(
          `SELECT pg_is_in_recovery() AS recovering, pg_last_wal_replay_lsn()::text AS lsn,
                  pg_last_xact_replay_timestamp() AS at`,
        );
        const row = rows[0];
        if (row) {
          last = {
            replayLsn: row.lsn ?? last.replayLsn,
            replayedAt: row.at ? row.at.toISOString() : last.replayedAt,
          };
          onProgress(last);
          if (!row.recovering) return last;
        }
      } catch {
        // Not accepting connections yet (starting, or not consistent yet).
      } finally {
        await client.end().catch(() => {});
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  /** Fast shutdown (SIGKILL after 30 s), the fetch server closed, the directory removed. */
  async stop(): Promise<void> {
    const child = this.postmaster;
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGINT');
      const done = await Promise.race([
        this.exited?.then(() => true),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 30_000).unref()),
      ]);
      if (!done) child.kill('SIGKILL');
      await this.exited;
    }
    await this.fetchServer?.close();
    await fs.rm(this.dir, { recursive: true, force: true });
  }
}

/**
 * Scratch directories of restores whose worker died (`pgkeep-pitr-scratch-*` marked by this deployment, whose lock nobody holds):
 * a postmaster still running from one is killed, then the directory goes.
 */
export async function sweepScratchInstances(
  scratchRoot: string,
  namespace: string,
  isAbandoned: (dir: string) => Promise<(() => Promise<void>) | undefined>,
  logger: Logger,
): Promise<string[]> {
  let entries: string[];
  try {
    entries = await fs.readdir(scratchRoot);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const entry of entries) {
    if (!entry.startsWith(SCRATCH_PREFIX)) continue;
    const dir = path.join(scratchRoot, entry);
    const marker = await fs
      .readFile(path.join(dir, MARKER), 'utf8')
      .then((text) => JSON.parse(text) as { namespace?: unknown })
      .catch(() => undefined);
    // Another deployment's (or not a restore's at all): never ours to remove.
    if (marker?.namespace !== namespace) continue;
    const release = await isAbandoned(dir);
    if (!release) continue;
    try {
      const pidText = await fs
        .readFile(path.join(dir, 'data', 'postmaster.pid'), 'utf8')
        .catch(() => '');
      const pid = Number(pidText.split('\n')[0]);
      if (Number.isInteger(pid) && pid > 1) {
        const cmdline = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
        if (cmdline.includes(dir)) {
          process.kill(pid, 'SIGKILL');
          logger.warn({ pid, dir }, 'postmaster of an abandoned temporary instance killed');
        }
      }
      await fs.rm(dir, { recursive: true, force: true });
      removed.push(dir);
    } finally {
      await release();
    }
  }
  if (removed.length > 0)
    logger.info({ removed }, 'scratch directories of abandoned PITR restores removed');
  return removed;
}
