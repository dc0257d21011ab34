import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, open, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { serverUrl, toolEnv } from '../lib/db.js';
import { loadAverage } from '../lib/machine.js';
import {
  createTargetDatabases,
  dropTargetDatabases,
  targetDatabaseNames,
} from '../lib/target-databases.js';
import { runPipeline } from '../lib/tools.js';
import { median } from '../lib/util.js';

/**
 * What one backup of a small database costs beyond `pg_dump | zstd`, step by step: the steps
 * pgkeep's backup job takes (packages/engine/src/run-backup.ts, the local zstd path), done
 * here by hand in the same order and timed, alternating with the bare pipeline:
 *   npx tsx bench/experiments/small-backup-costs.ts --databases 6 --rounds 5
 */
const { values } = parseArgs({
  options: {
    databases: { type: 'string', default: '6' },
    rounds: { type: 'string', default: '5' },
  },
});
const count = Number(values.databases);
const rounds = Number(values.rounds);
const names = targetDatabaseNames('pgkeep_bench_costs_', count);
const dir = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-costs-'));
// As pgkeep starts its children and sessions (packages/pg: setpriv, PGOPTIONS).
const setpriv = ['--pdeathsig', 'SIGKILL', '--'];
const sessionOptions = '-c client_connection_check_interval=2000';

async function connect(database: string): Promise<pg.Client> {
  const client = new pg.Client({
    connectionString: serverUrl(database),
    options: sessionOptions,
    keepAlive: true,
  });
  client.on('error', () => {});
  await client.connect();
  return client;
}

const LOCK_KEY = 20_260_122;
/** A lock as AdvisoryLocks takes it: its own connection, a lock timeout, the lock. */
async function lock(objectKey: number, fn: string): Promise<pg.Client> {
  const client = await connect('postgres');
  await client.query('SET lock_timeout = 600000');
  await client.query(`SELECT ${fn}($1::int4, $2::int4)`, [LOCK_KEY, objectKey]);
  return client;
}
async function unlock(client: pg.Client, objectKey: number, fn: string): Promise<void> {
  await client.query(`SELECT ${fn}($1::int4, $2::int4)`, [LOCK_KEY, objectKey]);
  await client.end();
}

async function fsyncPath(file: string): Promise<void> {
  const handle = await open(file, 'r');
  await handle.sync();
  await handle.close();
}

async function sha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

const steps: Record<string, number[]> = {};
const timed = async <T>(step: string, work: () => Promise<T>): Promise<T> => {
  const started = performance.now();
  const result = await work();
  const times = steps[step] ?? [];
  times.push(performance.now() - started);
  steps[step] = times;
  return result;
};

async function bare(database: string): Promise<number> {
  return runPipeline(
    [
      { command: 'pg_dump', args: ['-Fc', '-Z0', database] },
      { command: 'zstd', args: ['-3', '-T2', '-q', '-c'] },
    ],
    { env: toolEnv(database), stdoutFile: path.join(dir, `${database}.raw.zst`) },
  );
}

/** pgkeep's steps for one backup, each timed. */
async function likePgkeep(database: string): Promise<number> {
  const started = performance.now();
  const [storage, db, slot] = await timed('3 locks: connect + SET + lock, each', async () => [
    await lock(1, 'pg_advisory_lock_shared'),
    await lock(2, 'pg_advisory_lock_shared'),
    await lock(3, 'pg_advisory_lock'),
  ]);
  const client = await timed('snapshot session: connect', () => connect(database));
  const snapshot = await timed('BEGIN, export snapshot, version, tables, size', async () => {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const { rows } = await client.query<{ s: string }>('SELECT pg_export_snapshot() AS s');
    await client.query(
      "SELECT current_setting('server_version') AS v, current_setting('server_version_num') AS n",
    );
    await client.query(
      "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2",
    );
    await client.query('SELECT pg_database_size(current_database())');
    return rows[0]?.s as string;
  });
  const partial = path.join(dir, `${database}.zst.partial`);
  await timed('pg_dump --snapshot | zstd under setpriv, row counts beside it', async () => {
    const counts = (async () => {
      for (const table of ['customers', 'events', 'orders']) {
        await client.query(`SELECT count(*) FROM public.${table}`);
      }
    })();
    await runPipeline(
      [
        {
          command: 'setpriv',
          args: [
            ...setpriv,
            'pg_dump',
            '--format=custom',
            '--compress=0',
            '--no-password',
            `--snapshot=${snapshot}`,
          ],
        },
        { command: 'setpriv', args: [...setpriv, 'zstd', '-3', '-T0', '-q', '-c'] },
      ],
      {
        env: { ...toolEnv(database), PGOPTIONS: sessionOptions, PGAPPNAME: 'pgkeep' },
        stdoutFile: partial,
      },
    );
    await counts;
  });
  const file = partial.replace(/\.partial$/, '');
  const digest = await timed('sha256 of the file', () => sha256(partial));
  await timed('fsync file, rename, fsync directory', async () => {
    await fsyncPath(partial);
    await rename(partial, file);
    await fsyncPath(dir);
  });
  await timed('COMMIT', () => client.query('COMMIT'));
  await timed('manifest: write, fsync, rename, fsync directory', async () => {
    const manifest = path.join(dir, `${database}.json`);
    await writeFile(
      `${manifest}.tmp`,
      JSON.stringify({ database, sha256: digest, pad: 'x'.repeat(900) }),
    );
    await fsyncPath(`${manifest}.tmp`);
    await rename(`${manifest}.tmp`, manifest);
    await fsyncPath(dir);
  });
  await timed('snapshot session: end', () => client.end());
  await timed('3 locks: unlock + end, each', async () => {
    await unlock(slot as pg.Client, 3, 'pg_advisory_unlock');
    await unlock(db as pg.Client, 2, 'pg_advisory_unlock_shared');
    await unlock(storage as pg.Client, 1, 'pg_advisory_unlock_shared');
  });
  return performance.now() - started;
}

try {
  await createTargetDatabases(names, (line) => process.stdout.write(`${line}\n`));
  for (const name of names) await bare(name); // warm-up, untimed
  const bareMs: number[] = [];
  const pgkeepMs: number[] = [];
  const loads: number[] = [];
  for (let round = 0; round < rounds; round += 1) {
    loads.push(loadAverage()[0] ?? 0);
    for (const name of names) {
      bareMs.push(await bare(name));
      pgkeepMs.push(await likePgkeep(name));
    }
  }
  const row = (label: string, values: number[]) => `| ${label} | ${median(values).toFixed(1)} ms |`;
  const lines = [
    `${count} databases × ${rounds} rounds, alternating; load average (1 min) at each round: ${loads.map((l) => l.toFixed(1)).join(', ')}`,
    '',
    '| step (median per backup) | time |',
    '| --- | --- |',
    row('`pg_dump -Fc -Z0 | zstd -3 -T2` (bare)', bareMs),
    ...Object.entries(steps).map(([step, values]) => row(step, values)),
    row('**all steps, one backup**', pgkeepMs),
    row(
      '**all steps − bare, paired**',
      pgkeepMs.map((ms, i) => ms - (bareMs[i] ?? 0)),
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  await dropTargetDatabases(names);
  await rm(dir, { recursive: true, force: true });
}
