import { readFile } from 'node:fs/promises';
import { type BackupFormat, type Compression, type JobResult, loadConfig } from '@pgkeep/core';
import {
  type EngineContext,
  runBackup,
  runRestore,
  temporaryDatabaseLoadSettings,
} from '@pgkeep/engine';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createTestEngine, testRun } from './support/engine.js';
import { databaseSnapshot, seedPanelSchema } from './support/panel-schema.js';
import { startTestCluster, type TestCluster } from './support/pg-cluster.js';
import { createTestEnv, type TestEnv, urlWithDatabase, withClient } from './support/test-env.js';

/**
 * A restore loads its temporary database with synchronous_commit=off, and its swap commits
 * synchronously, which puts the whole load on disk. Shown on a server of the test's own whose
 * default is synchronous_commit=off as well, with its WAL writer held stopped: nothing but a
 * synchronous commit writes the last of the WAL, and a crash (immediate shutdown) loses the
 * rest. A crash the moment a restore returns must still leave the backup's data, indexes and
 * constraints in the target.
 */

const DATABASE = 'shop';

let cluster: TestCluster;
let env: TestEnv;
let engine: EngineContext;

const shopUrl = () => urlWithDatabase(cluster.url, DATABASE);

/**
 * A table whose CHECK constraint logs the settings of the session that inserts a row: the
 * server log then shows what the restore's load ran with, as the server saw it.
 */
const LOAD_PROBE = `
  CREATE FUNCTION load_probe_seen(id int) RETURNS boolean LANGUAGE plpgsql AS $$
  BEGIN
    RAISE LOG 'load probe: database=% application=% synchronous_commit=% maintenance_work_mem=% workers=%',
      current_database(), current_setting('application_name'),
      current_setting('synchronous_commit'), current_setting('maintenance_work_mem'),
      current_setting('max_parallel_maintenance_workers');
    RETURN id > 0;
  END $$;
  CREATE TABLE load_probe (id int PRIMARY KEY CHECK (load_probe_seen(id)));
  INSERT INTO load_probe VALUES (1);
`;

/** What a restore must bring back besides the rows: indexes, constraints, the sequence. */
async function schemaSnapshot(url: string) {
  return withClient(url, async (client) => {
    const indexes = await client.query<{ name: string; definition: string; valid: boolean }>(
      `SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS definition,
              i.indisvalid AS valid
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
       WHERE c.relnamespace = 'public'::regnamespace ORDER BY 1`,
    );
    const constraints = await client.query<{ name: string; definition: string }>(
      `SELECT conname AS name, pg_get_constraintdef(oid) AS definition FROM pg_constraint
       WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2`,
    );
    const sequence = await client.query<{ n: string }>(
      'SELECT last_value::text AS n FROM "InvoiceNumber"',
    );
    return {
      indexes: indexes.rows,
      constraints: constraints.rows,
      invoiceNumber: sequence.rows[0]?.n,
    };
  });
}

/**
 * Runs `work` with the server's WAL writer stopped (SIGSTOP), so WAL that only an asynchronous
 * commit wrote stays in shared memory, where a crash loses it. Let go again afterwards if the
 * process is still there (a crash ends it).
 */
async function withWalWriterStopped<T>(work: () => Promise<T>): Promise<T> {
  // Everything so far on disk first: only what `work` does is at stake.
  await cluster.query('CHECKPOINT');
  const [walWriter] = await cluster.query<{ pid: number }>(
    "SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'",
  );
  if (!walWriter) throw new Error('no WAL writer found');
  process.kill(walWriter.pid, 'SIGSTOP');
  try {
    return await work();
  } finally {
    letGo(walWriter.pid);
  }
}

/** SIGCONT, unless the process is gone (a crash ended it). */
function letGo(pid: number): void {
  try {
    process.kill(pid, 'SIGCONT');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

async function logSince(offset: number): Promise<string> {
  return (await readFile(cluster.logFile)).subarray(offset).toString('utf8');
}

beforeAll(async () => {
  cluster = await startTestCluster({
    settings: {
      // The default a restore must not rely on: its swap sets synchronous commit itself.
      synchronous_commit: 'off',
      // Nothing in the background commits (a synchronous commit would flush the WAL for all).
      autovacuum: 'off',
      checkpoint_timeout: '1h',
    },
  });
  await cluster.query(`CREATE DATABASE ${DATABASE}`);
  await seedPanelSchema(shopUrl());
  await withClient(shopUrl(), (client) => client.query(LOAD_PROBE));
  // The advisory locks on the shared server: the crashes here must not take them along.
  env = await createTestEnv('loadsync', {
    DATABASE_URL: shopUrl(),
    LOCK_DATABASE_URL: inject('databaseUrl'),
  });
  engine = await createTestEngine(env.env);
});

afterAll(async () => {
  await env?.cleanup();
  await cluster?.stop();
});

describe('a crash right after a restore', () => {
  it('loses a commit that was not flushed (the crash is a real one)', async () => {
    await cluster.query('CREATE TABLE control (id int)');
    await withWalWriterStopped(async () => {
      await cluster.query('INSERT INTO control VALUES (1)');
      expect(await cluster.query('SELECT id FROM control')).toEqual([{ id: 1 }]);
      await cluster.crash();
    });
    expect(await cluster.query('SELECT id FROM control')).toEqual([]);
  });

  it.each([
    { format: 'custom', compression: 'zstd' },
    { format: 'plain', compression: 'gzip' },
  ] as { format: BackupFormat; compression: Compression }[])(
    'finds every row, index and constraint of the $format backup in the target',
    async ({ format, compression }) => {
      const manifest = await runBackup(
        engine,
        {
          tables: null,
          format,
          jobs: null,
          compression,
          label: null,
          type: 'manual',
          excludeTables: null,
          targetName: 'default',
          requestedBy: 'admin@example.com',
          requestedAt: new Date().toISOString(),
        },
        testRun(engine),
      );
      const atBackup = await databaseSnapshot(shopUrl());
      const schemaAtBackup = await schemaSnapshot(shopUrl());
      expect(schemaAtBackup.indexes.length).toBeGreaterThanOrEqual(6);
      expect(schemaAtBackup.indexes.every((index) => index.valid)).toBe(true);

      // Changes the restore must undo: if its swap were lost, they would still be there.
      await withClient(shopUrl(), (client) =>
        client.query(`
          DELETE FROM "WhatsappMessage" WHERE id % 3 = 0;
          UPDATE "Payment" SET note = 'changed' WHERE id <= 100;
          CREATE TABLE added_later (id int);
          SELECT setval('"InvoiceNumber"', 9999);
        `),
      );
      expect(await databaseSnapshot(shopUrl())).not.toEqual(atBackup);

      const logOffset = (await readFile(cluster.logFile)).length;
      const result = (await withWalWriterStopped(async () => {
        const restored = await runRestore(
          engine,
          {
            backupId: manifest.id,
            target: DATABASE,
            targetName: 'default',
            requestedBy: 'admin@example.com',
            requestedAt: new Date().toISOString(),
          },
          testRun(engine),
        );
        // The moment the restore returned.
        await cluster.crash();
        return restored;
      })) as JobResult<'restore'>;
      expect(result).toMatchObject({ mode: 'database', target: DATABASE });

      const log = await logSince(logOffset);
      // The server recovered from its WAL, as after a power cut.
      expect(log).toContain('database system was interrupted');
      expect(log).toContain('redo starts');

      expect(await databaseSnapshot(shopUrl())).toEqual(atBackup);
      expect(await schemaSnapshot(shopUrl())).toEqual(schemaAtBackup);
      // The rebuilt indexes hold every row of their tables.
      await withClient(shopUrl(), async (client) => {
        await client.query('CREATE EXTENSION IF NOT EXISTS amcheck');
        const { rows } = await client.query<{ name: string }>(
          `SELECT c.relname AS name, bt_index_check(c.oid, true) FROM pg_index i
           JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
           WHERE c.relnamespace = 'public'::regnamespace AND a.amname = 'btree'`,
        );
        expect(rows.length).toBe(schemaAtBackup.indexes.length);
        await client.query('DROP EXTENSION amcheck');
      });

      // Swapped in: no temporary database left, the replaced one kept and closed.
      const databases = await cluster.query<{ name: string; allowed: boolean }>(
        'SELECT datname AS name, datallowconn AS allowed FROM pg_database ORDER BY 1',
      );
      expect(databases.filter((row) => row.name.startsWith('pgkeep_restore_'))).toEqual([]);
      expect(databases).toContainEqual({ name: result.previousDatabase, allowed: false });

      // The load ran with the settings of a temporary database, the one row of load_probe
      // logged by pgkeep's own session there.
      const settings = temporaryDatabaseLoadSettings(loadConfig(env.env, { requireAuth: false }));
      const probes = [
        ...log.matchAll(
          /load probe: database=(\S+) application=(\S+) synchronous_commit=(\S+) maintenance_work_mem=(\S+) workers=(\S+)/g,
        ),
      ].map(([, database, application, synchronousCommit, maintenanceWorkMem, workers]) => ({
        database: database?.startsWith('pgkeep_restore_') ? 'temporary' : database,
        application,
        synchronousCommit,
        maintenanceWorkMem,
        workers,
      }));
      expect(probes).toEqual([
        {
          database: 'temporary',
          application: 'pgkeep',
          synchronousCommit: 'off',
          maintenanceWorkMem: settings.maintenance_work_mem,
          // No workers per index build by default (the server's own is 2).
          workers: '0',
        },
      ]);
    },
    180_000,
  );
});
