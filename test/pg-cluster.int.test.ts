import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createRole, pgTool, startTestCluster, type TestCluster } from './support/pg-cluster.js';
import { childrenOf, isRunning } from './support/processes.js';

const run = promisify(execFile);

/** pg_basebackup into a fresh directory; the result, and the directory's files on success. */
async function baseBackup(url: string) {
  const target = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-basebackup-'));
  try {
    await run(
      pgTool('pg_basebackup'),
      ['-D', path.join(target, 'out'), '-Ft', '-X', 'none', '--checkpoint=fast', '-d', url],
      { env: { PATH: process.env.PATH } },
    );
    return { ok: true as const, files: (await readdir(path.join(target, 'out'))).sort() };
  } catch (error) {
    return { ok: false as const, stderr: String((error as { stderr?: string }).stderr) };
  } finally {
    await rm(target, { recursive: true, force: true });
  }
}

describe('a test cluster with replication allowed', () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await startTestCluster();
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  it('runs on a port of its own, with WAL fit for replication', async () => {
    expect(cluster.port).not.toBe(5432);
    const [settings] = await cluster.query<{ port: number; wal_level: string; version: string }>(
      `SELECT inet_server_port() AS port, current_setting('wal_level') AS wal_level,
              current_setting('server_version_num') AS version`,
    );
    expect(settings).toEqual({
      port: cluster.port,
      wal_level: 'replica',
      version: expect.any(String),
    });
    expect(Number(settings?.version)).toBeGreaterThanOrEqual(150000);
    expect(Number(settings?.version)).toBeLessThan(160000);
    const [{ fsync } = { fsync: '' }] = await cluster.query<{ fsync: string }>('SHOW fsync');
    expect(fsync).toBe('on');
  });

  it('takes a base backup over a replication connection and keeps a physical slot', async () => {
    await cluster.query("SELECT pg_create_physical_replication_slot('t', true)");
    const backup = await baseBackup(cluster.url);
    expect(backup).toEqual({ ok: true, files: ['backup_manifest', 'base.tar'] });
    const slots = await cluster.query<{
      slot_name: string;
      slot_type: string;
      restart_lsn: string;
    }>('SELECT slot_name, slot_type, restart_lsn::text FROM pg_replication_slots');
    expect(slots).toEqual([
      { slot_name: 't', slot_type: 'physical', restart_lsn: expect.any(String) },
    ]);
  });

  it('refuses replication to a role without REPLICATION', async () => {
    const url = await createRole(cluster, 'reader', { replication: false });
    const [who] = await cluster.query<{ rolreplication: boolean }>(
      "SELECT rolreplication FROM pg_roles WHERE rolname = 'reader'",
    );
    expect(who?.rolreplication).toBe(false);
    const backup = await baseBackup(url);
    expect(backup.ok).toBe(false);
    expect(backup.ok || backup.stderr).toContain(
      'must be superuser or replication role to start walsender',
    );
  });

  it('keeps its data and port across a restart', async () => {
    await cluster.query('CREATE TABLE kept AS SELECT 42 AS answer');
    const before = cluster.pid();
    await cluster.restart();
    expect(cluster.pid()).not.toBe(before);
    expect(await isRunning(before)).toBe(false);
    expect(await cluster.query('SELECT answer FROM kept')).toEqual([{ answer: 42 }]);
  });
});

describe('a test cluster', () => {
  const started: TestCluster[] = [];
  afterEach(async () => {
    await Promise.all(started.splice(0).map((cluster) => cluster.stop()));
  });

  it('with replication not allowed refuses a base backup in pg_hba.conf', async () => {
    const cluster = await startTestCluster({ allowReplication: false });
    started.push(cluster);
    const backup = await baseBackup(cluster.url);
    expect(backup.ok).toBe(false);
    expect(backup.ok || backup.stderr).toContain(
      'no pg_hba.conf entry for replication connection from host "127.0.0.1", user "postgres"',
    );
  });

  it('takes the WAL level and settings it is given', async () => {
    const cluster = await startTestCluster({
      walLevel: 'logical',
      settings: { application_name: "it's mine", work_mem: '8MB' },
    });
    started.push(cluster);
    const [settings] = await cluster.query(
      `SELECT current_setting('wal_level') AS wal_level,
              current_setting('application_name') AS application_name,
              current_setting('work_mem') AS work_mem`,
    );
    expect(settings).toEqual({
      wal_level: 'logical',
      application_name: "it's mine",
      work_mem: '8MB',
    });
  });

  it('stops its server and removes its directory, and a second stop does nothing', async () => {
    const cluster = await startTestCluster();
    started.push(cluster);
    const postmasterPid = Number(
      (await readFile(path.join(cluster.dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0],
    );
    expect(postmasterPid).toBe(cluster.pid());
    expect(await isRunning(postmasterPid)).toBe(true);
    const serverProcesses = childrenOf(postmasterPid);
    expect(serverProcesses.length).toBeGreaterThan(0); // checkpointer, walwriter, …
    await cluster.stop();
    expect(await isRunning(postmasterPid)).toBe(false);
    for (const { pid } of serverProcesses) expect(await isRunning(pid)).toBe(false);
    expect(existsSync(cluster.dir)).toBe(false);
    await cluster.stop();
    await expect(cluster.query('SELECT 1')).rejects.toThrow();
  });

  it('dies with the process that started it, even by SIGKILL', async () => {
    const holder = spawn(
      process.execPath,
      ['--import', 'tsx', path.resolve('test/fixtures/hold-cluster.ts')],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = once(holder, 'exit');
    const started = await new Promise<{ pid: number; dir: string }>((resolve, reject) => {
      let out = '';
      holder.stdout.setEncoding('utf8');
      holder.stdout.on('data', (chunk: string) => {
        out += chunk;
        if (out.includes('\n')) resolve(JSON.parse(out));
      });
      holder.once('exit', (code) => reject(new Error(`holder exited ${code}`)));
    });
    try {
      const serverProcesses = childrenOf(started.pid);
      expect(await isRunning(started.pid)).toBe(true);
      holder.kill('SIGKILL');
      await exited;
      // The kernel delivers the death signal at once; the server's own children then see the
      // postmaster gone and exit within a moment.
      await vi.waitFor(
        async () => {
          for (const { pid } of [{ pid: started.pid }, ...serverProcesses]) {
            expect(await isRunning(pid)).toBe(false);
          }
        },
        { timeout: 10_000, interval: 50 },
      );
    } finally {
      holder.kill('SIGKILL');
      await rm(started.dir, { recursive: true, force: true });
    }
  });
});
