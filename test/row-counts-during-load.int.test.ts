import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createLogger } from '@pgkeep/core';
import { countRows, listUserTables, parseDatabaseUrl, startPgRestore } from '@pgkeep/pg';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rowCountsDuringLoad } from '../packages/engine/src/row-counts-during-load.js';
import { createDatabase, dropDatabase, urlWithDatabase, withClient } from './support/test-env.js';

/**
 * A restore counts each table's rows as soon as pg_restore -j has committed its data, while
 * the load goes on, and the counts it reports are the restored database's exact ones: a table
 * whose index takes seconds to build after its data is counted before pg_restore exits, and a
 * count that differs from the manifest is still a mismatch.
 */
const run = promisify(execFile);
const serverUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const source = `pgkeep_duringload_src_${process.pid}`;
const restored: string[] = [];
const logger = createLogger('silent', 'test');
let scratch: string;
let archive: string;
let expected: Record<string, number>;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-duringload-'));
  await createDatabase(serverUrl, source);
  await withClient(urlWithDatabase(serverUrl, source), (client) =>
    client.query(`
      CREATE SCHEMA "odd schema";
      -- An index whose build takes about 2 s (2 ms a row), after the table's data is loaded.
      CREATE FUNCTION slow_key(v int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS
        $$ BEGIN PERFORM pg_sleep(0.002); RETURN v; END $$;
      CREATE TABLE slow (id int);
      INSERT INTO slow SELECT generate_series(1, 1000);
      CREATE INDEX slow_key_idx ON slow (slow_key(id));
      CREATE TABLE "odd schema"."a table" (id int PRIMARY KEY, body text);
      INSERT INTO "odd schema"."a table" SELECT g, 'row ' || g FROM generate_series(1, 3000) g;
      CREATE TABLE empty_one (id int);
    `),
  );
  expected = await withClient(urlWithDatabase(serverUrl, source), async (client) =>
    countRows(client, await listUserTables(client)),
  );
  archive = path.join(scratch, 'db.dump');
  // Written to a pipe, as a backup's archive is (no data offsets in its table of contents).
  await run('sh', [
    '-c',
    'pg_dump -Fc -Z0 --dbname="$1" | cat > "$2"',
    'sh',
    urlWithDatabase(serverUrl, source),
    archive,
  ]);
});

afterAll(async () => {
  for (const database of [source, ...restored]) await dropDatabase(serverUrl, database);
  await rm(scratch, { recursive: true, force: true });
});

/**
 * A session on `url` whose queries' answer times are recorded, as `connect` gives it to
 * RowCountsDuringLoad; `sessions` counts the sessions opened.
 */
function recordingSessions(url: string) {
  const answeredAt: number[] = [];
  let sessions = 0;
  const connect = async () => {
    sessions += 1;
    const client = new pg.Client({ connectionString: url, application_name: APP });
    client.on('error', () => {});
    await client.connect();
    const query = client.query.bind(client) as (...args: unknown[]) => Promise<unknown>;
    client.query = (async (...args: unknown[]) => {
      const result = await query(...args);
      answeredAt.push(Date.now());
      return result;
    }) as typeof client.query;
    return client;
  };
  return { connect, answeredAt, sessions: () => sessions };
}

const APP = `pgkeep-duringload-${process.pid}`;

async function newDatabase(): Promise<string> {
  const database = `pgkeep_duringload_${process.pid}_${restored.length}`;
  restored.push(database);
  await createDatabase(serverUrl, database);
  return urlWithDatabase(serverUrl, database);
}

/** pg_restore -j `jobs` of the archive into a new database, counted as it loads. */
async function restoreCounting(
  jobs: number,
  manifestCounts: Record<string, number>,
  afterLoad: () => Promise<void> = async () => {},
) {
  const url = await newDatabase();
  const recording = recordingSessions(url);
  const counting = await rowCountsDuringLoad(
    recording.connect,
    { format: 'custom', rowCounts: manifestCounts },
    archive,
    logger,
  );
  try {
    const restore = startPgRestore({
      target: parseDatabaseUrl(url),
      file: archive,
      jobs,
      onItemFinished: (dumpId) => counting.itemFinished(dumpId),
    });
    await restore.done;
    const exitedAt = Date.now();
    await afterLoad();
    const checked = await counting.check();
    return {
      checked,
      answeredBeforeExit: recording.answeredAt.filter((at) => at < exitedAt).length,
      sessions: recording.sessions(),
    };
  } finally {
    await counting.close();
  }
}

describe('row counts taken while pg_restore loads', () => {
  it('counts each table once its data is in, before pg_restore exits, and gets the exact counts', async () => {
    const { checked, answeredBeforeExit } = await restoreCounting(2, expected);
    expect(checked.mismatches).toEqual([]);
    expect(checked.actual).toEqual(expected);
    expect(Object.keys(expected).sort()).toEqual([
      'odd schema.a table',
      'public.empty_one',
      'public.slow',
    ]);
    // All three tables' data is committed long before the 2 s index build ends: the three
    // counts came back while pg_restore was still building it.
    expect(checked.countedDuringLoad.sort()).toEqual(Object.keys(expected).sort());
    expect(answeredBeforeExit).toBe(3);
  });

  it('reports a table whose rows differ from the manifest, counted during the load or not', async () => {
    const wrong = { ...expected, 'public.slow': 999, 'public.gone': 5 };
    const { checked } = await restoreCounting(2, wrong);
    expect(checked.mismatches.sort()).toEqual([
      'public.gone: missing rows, expected 5',
      'public.slow: 1000 rows, expected 999',
    ]);
    expect(checked.countedDuringLoad).toContain('public.slow');
    expect(checked.countedDuringLoad).not.toContain('public.gone');
  });

  it('counts everything after the load where pg_restore reports no finished entries (-j 1)', async () => {
    const { checked, answeredBeforeExit } = await restoreCounting(1, expected);
    expect(checked.countedDuringLoad).toEqual([]);
    expect(answeredBeforeExit).toBe(0);
    expect(checked.actual).toEqual(expected);
    expect(checked.mismatches).toEqual([]);
  });

  it('counts again on a new session when its own was ended during the load', async () => {
    const { checked, answeredBeforeExit, sessions } = await restoreCounting(2, expected, () =>
      // What idle_session_timeout or an operator would do to a session idle through a long load.
      withClient(serverUrl, (client) =>
        client.query(
          'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1',
          [APP],
        ),
      ).then(() => {}),
    );
    // Counted during the load, then the session ended: the check still reports the exact
    // counts (no table reported missing) from a second session.
    expect(answeredBeforeExit).toBe(3);
    expect(sessions).toBe(2);
    expect(checked.mismatches).toEqual([]);
    expect(checked.actual).toEqual(expected);
  });

  it('counts after the load when the table of contents cannot be read', async () => {
    const url = await newDatabase();
    const recording = recordingSessions(url);
    const counting = await rowCountsDuringLoad(
      recording.connect,
      { format: 'custom', rowCounts: { 'public.t': 0 } },
      path.join(scratch, 'no-such-archive'),
      logger,
    );
    try {
      // Nothing maps to a table: a finished entry is ignored.
      counting.itemFinished(1);
      await withClient(url, (client) => client.query('CREATE TABLE t (id int)'));
      const checked = await counting.check();
      expect(checked).toEqual({ actual: { 'public.t': 0 }, mismatches: [], countedDuringLoad: [] });
    } finally {
      await counting.close();
    }
  });
});
