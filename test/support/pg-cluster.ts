import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

/** The server and client programs of the major version pgkeep supports. */
export const PG_BIN = '/usr/lib/postgresql/15/bin';

export function pgTool(name: string): string {
  return path.join(PG_BIN, name);
}

// A shared two-core machine can take a while to start a server; a broken one still fails fast
// because an exit during startup rejects at once.
const START_TIMEOUT_MS = 30_000;
// Fast shutdown ends sessions and writes one checkpoint: seconds at most unless the server hangs.
const STOP_TIMEOUT_MS = 30_000;
const LOG_TAIL_BYTES = 4096;

export interface TestClusterOptions {
  walLevel?: 'replica' | 'minimal' | 'logical';
  /** pg_hba.conf lets replication connections in (local and 127.0.0.1, trust). Default true. */
  allowReplication?: boolean;
  /** Extra postgresql.conf settings; they override the fixture's own. */
  settings?: Record<string, string>;
}

export interface TestCluster {
  port: number;
  /** postgres://postgres@127.0.0.1:<port>/postgres */
  url: string;
  /** The temporary directory: data directory, server log and Unix socket. */
  dir: string;
  dataDir: string;
  logFile: string;
  /** The PID of the running postmaster. */
  pid(): number;
  /** Runs one statement on a connection of its own (as postgres, database `postgres` by default). */
  query<R extends pg.QueryResultRow = Record<string, unknown>>(
    sql: string,
    params?: unknown[],
    database?: string,
  ): Promise<R[]>;
  /** Fast shutdown, then a start on the same port and data directory. */
  restart(): Promise<void>;
  /**
   * A crash: immediate shutdown (no checkpoint, nothing more written; what `pg_ctl stop -m
   * immediate` does), then a start, which recovers from the WAL on disk as after a power cut.
   */
  crash(): Promise<void>;
  /** Fast shutdown, waits for the server to exit, removes the directory. Idempotent. */
  stop(): Promise<void>;
}

const isRoot = process.getuid?.() === 0;

/** initdb and postgres refuse to run as root: as root they run as the postgres OS user. */
function asServerUser(): string[] {
  return isRoot ? ['--reuid', 'postgres', '--regid', 'postgres', '--init-groups'] : [];
}

function serverEnv(): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, LANG: 'C', LC_ALL: 'C' };
}

function postgresOsUser(): { uid: number; gid: number } {
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }));
  return { uid: id('-u'), gid: id('-g') };
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function confValue(value: string): string {
  return `'${value.replaceAll('\\', '\\\\').replaceAll("'", "''")}'`;
}

function settingsBlock(settings: Record<string, string>): string {
  const lines = Object.entries(settings).map(([name, value]) => {
    if (!/^[a-z_][a-z0-9_.]*$/i.test(name)) throw new Error(`not a setting name: ${name}`);
    return `${name} = ${confValue(value)}`;
  });
  return `\n# Test cluster settings\n${lines.join('\n')}\n`;
}

function hbaFile(allowReplication: boolean): string {
  const lines = ['local all all trust', 'host all all 127.0.0.1/32 trust'];
  if (allowReplication) {
    lines.push('local replication all trust', 'host replication all 127.0.0.1/32 trust');
  }
  return `${lines.join('\n')}\n`;
}

interface ServerProcess {
  child: ChildProcess;
  closed: Promise<void>;
}

/**
 * The postmaster is a child of this process through `setpriv --pdeathsig SIGKILL` (applied after
 * the switch to the postgres user, so the kernel keeps it): if the test process dies, even by
 * SIGKILL, the server dies with it and its backends follow on postmaster death. Nothing is left
 * to a pg_ctl that would detach it. Resolves once the server accepts connections.
 */
async function startServer(dataDir: string, logFile: string): Promise<ServerProcess> {
  const child = spawn(
    'setpriv',
    [...asServerUser(), '--pdeathsig', 'SIGKILL', '--', pgTool('postgres'), '-D', dataDir],
    { env: serverEnv(), stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const log = createWriteStream(logFile, { flags: 'a' });
  let tail = '';
  let readyResolve: () => void = () => {};
  const ready = new Promise<void>((resolve) => {
    readyResolve = resolve;
  });
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    log.write(chunk);
    tail = (tail + chunk).slice(-LOG_TAIL_BYTES);
    if (tail.includes('database system is ready to accept connections')) readyResolve();
  });
  const closed = new Promise<void>((resolve) => {
    child.once('close', () => log.end(() => resolve()));
  });
  const spawnFailed = once(child, 'error').then(([error]) => {
    throw error;
  });
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`postgres did not start within ${START_TIMEOUT_MS} ms:\n${tail}`)),
      START_TIMEOUT_MS,
    );
  });
  const exited = closed.then(() => {
    throw new Error(
      `postgres exited during startup (${child.exitCode ?? child.signalCode}):\n${tail}`,
    );
  });
  try {
    await Promise.race([ready, exited, spawnFailed, timedOut]);
  } catch (error) {
    await stopServer({ child, closed }, 'SIGKILL');
    throw error;
  } finally {
    clearTimeout(timer);
    // The losers of the race settle later (at shutdown): nobody waits for them.
    exited.catch(() => {});
    spawnFailed.catch(() => {});
    timedOut.catch(() => {});
  }
  return { child, closed };
}

/** SIGINT is PostgreSQL's fast shutdown; a server that does not finish in time is killed. */
async function stopServer(server: ServerProcess, signal: NodeJS.Signals = 'SIGINT') {
  if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill(signal);
  let timer: NodeJS.Timeout | undefined;
  const gaveUp = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), STOP_TIMEOUT_MS);
  });
  const outcome = await Promise.race([server.closed, gaveUp]);
  clearTimeout(timer);
  if (outcome === 'timeout') {
    server.child.kill('SIGKILL');
    await server.closed;
  }
}

async function initdb(dataDir: string): Promise<void> {
  try {
    await promisify(execFile)(
      'setpriv',
      [
        ...asServerUser(),
        '--',
        pgTool('initdb'),
        '-D',
        dataDir,
        '-U',
        'postgres',
        '--auth=trust',
        '--encoding=UTF8',
        '--locale=C',
      ],
      { env: serverEnv() },
    );
  } catch (error) {
    const { stderr } = error as { stderr?: string };
    throw new Error(`initdb failed: ${stderr?.trim() || (error as Error).message}`);
  }
}

/** A PostgreSQL 15 cluster of the test's own, on a free port, in a temporary directory. */
export async function startTestCluster(options: TestClusterOptions = {}): Promise<TestCluster> {
  const walLevel = options.walLevel ?? 'replica';
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-cluster-'));
  const dataDir = path.join(dir, 'data');
  const logFile = path.join(dir, 'log');
  let server: ServerProcess | undefined;
  let port = 0;
  try {
    if (isRoot) {
      const { uid, gid } = postgresOsUser();
      await chown(dir, uid, gid);
    }
    await initdb(dataDir);
    await writeFile(path.join(dataDir, 'pg_hba.conf'), hbaFile(options.allowReplication ?? true));
    const initialConf = await readFile(path.join(dataDir, 'postgresql.conf'), 'utf8');
    // The free port can be taken between its discovery and the server's bind: then another one.
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      const settings = {
        port: String(port),
        listen_addresses: '127.0.0.1',
        unix_socket_directories: dir,
        wal_level: walLevel,
        // WAL senders need wal_level replica or logical: the server refuses to start otherwise.
        max_wal_senders: walLevel === 'minimal' ? '0' : '10',
        max_replication_slots: '10',
        shared_buffers: '32MB',
        max_connections: '30',
        lc_messages: 'C',
        ...options.settings,
      };
      await writeFile(path.join(dataDir, 'postgresql.conf'), initialConf + settingsBlock(settings));
      try {
        server = await startServer(dataDir, logFile);
        break;
      } catch (error) {
        if (attempt >= 3 || !/could not bind|Address already in use/.test(String(error))) {
          throw error;
        }
      }
    }
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }

  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  let stopping: Promise<void> | undefined;
  const running = () => {
    if (!server || stopping) throw new Error('the test cluster is stopped');
    return server;
  };
  return {
    port,
    url,
    dir,
    dataDir,
    logFile,
    pid() {
      const pid = running().child.pid;
      if (pid === undefined) throw new Error('postgres has no pid');
      return pid;
    },
    async query<R extends pg.QueryResultRow>(sql: string, params: unknown[] = [], database = '') {
      const client = new pg.Client({
        connectionString: database ? urlWithDatabase(url, database) : url,
      });
      await client.connect();
      try {
        return (await client.query<R>(sql, params)).rows;
      } finally {
        await client.end();
      }
    },
    async restart() {
      await stopServer(running());
      server = undefined;
      server = await startServer(dataDir, logFile);
    },
    async crash() {
      // SIGQUIT is PostgreSQL's immediate shutdown: every process exits at once, without
      // writing anything still in shared memory (a child that does not exit is killed by the
      // postmaster after 5 s).
      await stopServer(running(), 'SIGQUIT');
      server = undefined;
      server = await startServer(dataDir, logFile);
    },
    stop() {
      stopping ??= (async () => {
        if (server) await stopServer(server);
        await rm(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}

function urlWithDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return parsed.toString();
}

function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * A login role on the cluster, with or without REPLICATION (and SUPERUSER, which implies the
 * right to replicate); returns its connection URL. Trust authentication: no password.
 */
export async function createRole(
  cluster: TestCluster,
  name: string,
  options: { replication: boolean; superuser?: boolean },
): Promise<string> {
  const attributes = [
    'LOGIN',
    options.replication ? 'REPLICATION' : 'NOREPLICATION',
    options.superuser ? 'SUPERUSER' : 'NOSUPERUSER',
  ];
  await cluster.query(`CREATE ROLE ${quoteIdentifier(name)} ${attributes.join(' ')}`);
  const url = new URL(cluster.url);
  url.username = encodeURIComponent(name);
  return url.toString();
}
