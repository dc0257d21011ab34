import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { adminHeaders, json, postJob, startApi, type TestApi, waitForJob } from './support/api.js';
import {
  createDatabase,
  createTestEnv,
  dropDatabase,
  type TestEnv,
  urlWithDatabase,
  withClient,
} from './support/test-env.js';
import { startWorker, WorkerProcess } from './support/worker-process.js';

/**
 * Many databases on two servers: the same PostgreSQL reached as `127.0.0.1` (server `main`) and
 * as `localhost` (server `second`), with one named target on each and a discovery target that
 * picks every database of `second` whose name starts with this test's prefix.
 */
let env: TestEnv;
let api: TestApi;
let worker: WorkerProcess;
let dir: string;
let targetsFile: string;
const databases: string[] = [];

async function database(suffix: string, rows: number): Promise<string> {
  const name = `${env.name}_${suffix}`;
  await createDatabase(env.serverUrl, name);
  databases.push(name);
  await withClient(urlWithDatabase(env.serverUrl, name), async (client) => {
    await client.query('CREATE TABLE item (id int PRIMARY KEY, note text)');
    await client.query(
      "INSERT INTO item SELECT g, 'row ' || g FROM generate_series(1, $1::int) AS g",
      [rows],
    );
  });
  return name;
}

function targetsYaml(first: string, second: string): string {
  const server = new URL(env.serverUrl);
  return `
servers:
  main:
    url: postgres://postgres@127.0.0.1:${server.port || 5432}/postgres
    maxConcurrentJobs: 1
  second:
    url: postgres://postgres@localhost:${server.port || 5432}/postgres
    password: \${SECOND_DB_PASSWORD}
    maxConcurrentJobs: 2
targets:
  orders:
    server: main
    database: ${first}
    schedules: { backup: "off", cleanup: "off", verify: "off" }
    retention: { keepLast: 2 }
  billing:
    server: second
    database: ${second}
    schedules: { backup: "off", cleanup: "off", verify: "off" }
  everything:
    server: second
    database: "*"
    include: ["${env.name}_d*"]
    schedules: { backup: "*/2 * * * * *", cleanup: "off", verify: "off" }
`;
}

beforeAll(async () => {
  env = await createTestEnv('targets');
  const first = await database('orders', 50);
  const second = await database('billing', 30);
  await database('d1', 10);
  dir = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-targets-'));
  targetsFile = path.join(dir, 'targets.yaml');
  await writeFile(targetsFile, targetsYaml(first, second));
  const processEnv = {
    ...env.env,
    TARGETS_FILE: targetsFile,
    // A password that the server (trust) does not need, to show it travels from the environment.
    SECOND_DB_PASSWORD: 'not-needed-here-but-secret',
  };
  [api, worker] = await Promise.all([startApi(processEnv), startWorker(processEnv)]);
});

afterAll(async () => {
  await worker?.stop();
  await api?.close();
  for (const name of databases) await dropDatabase(env.serverUrl, name);
  await rm(dir, { recursive: true, force: true });
  await env?.cleanup();
});

async function backupsOf(target: string) {
  const response = await api.app.inject({
    method: 'GET',
    url: `/api/targets/${encodeURIComponent(target)}/backups`,
    headers: adminHeaders(),
  });
  expect(response.statusCode, response.body).toBe(200);
  return json<{ data: { id: string; target: string; server: string; database: string }[] }>(
    response,
  ).data;
}

describe('targets', () => {
  it('lists configured and discovered targets, never a password', async () => {
    const response = await api.app.inject({
      method: 'GET',
      url: '/api/targets',
      headers: adminHeaders(),
    });
    expect(response.statusCode, response.body).toBe(200);
    expect(response.body).not.toContain('not-needed-here-but-secret');
    const targets = json<{ data: { name: string; kind: string; server: string }[] }>(response).data;
    const names = targets.map((target) => target.name);
    expect(names).toEqual(expect.arrayContaining(['orders', 'billing', `second/${env.name}_d1`]));
    // A discovery target never picks a database a named target covers.
    expect(names).not.toContain(`second/${env.name}_billing`);
    const discovered = targets.find((target) => target.name === `second/${env.name}_d1`);
    expect(discovered).toMatchObject({ kind: 'discovered', server: 'second' });
    // Its schedule is the discovery target's, with the scheduler's next run.
    const schedule = (
      discovered as unknown as { schedules: { name: string; nextRunAt: string | null }[] }
    ).schedules.find((entry) => entry.name === 'backup');
    expect(Date.parse(String(schedule?.nextRunAt))).toBeGreaterThan(Date.now() - 5_000);
    // A name the patterns allow but the server does not have, or no target at all.
    for (const name of [`second/${env.name}_d9`, 'nosuch']) {
      const missing = await api.app.inject({
        method: 'GET',
        url: `/api/targets/${encodeURIComponent(name)}/backups`,
        headers: adminHeaders(),
      });
      expect(missing.statusCode, name).toBe(404);
      expect(json(missing).error.code).toBe('TARGET_NOT_FOUND');
    }
    // The panel's routes act on `default`, which this file does not declare.
    const seed = await api.app.inject({
      method: 'GET',
      url: '/api/backup',
      headers: adminHeaders(),
    });
    expect(seed.statusCode).toBe(404);
    expect(json(seed).error.code).toBe('TARGET_NOT_FOUND');
  });

  it('backs up and restores each target in its own place', async () => {
    const orders = await waitForJob(api, await postJob(api, '/api/targets/orders/backups'));
    const billing = await waitForJob(api, await postJob(api, '/api/targets/billing/backups'));
    expect(orders.error).toBeNull();
    expect(billing.error).toBeNull();
    // A job's view names its target.
    expect((orders as unknown as { target: string }).target).toBe('orders');
    expect((billing as unknown as { target: string }).target).toBe('billing');
    expect(orders.result).toMatchObject({
      target: 'orders',
      server: 'main',
      database: `${env.name}_orders`,
      rowCounts: { 'public.item': 50 },
    });
    expect(billing.result).toMatchObject({ target: 'billing', server: 'second' });
    // Each target's backups under its own prefix, and only there.
    expect(await readdir(path.join(env.backupDir, 'targets', 'orders'))).toContain(
      `backup-${orders.result?.id}.manifest.json`,
    );
    expect((await backupsOf('orders')).map((backup) => backup.id)).toEqual([orders.result?.id]);
    expect((await backupsOf('billing')).map((backup) => backup.id)).toEqual([billing.result?.id]);
    // A backup of one target is not found under another.
    const cross = await api.app.inject({
      method: 'GET',
      url: `/api/targets/billing/backups/${orders.result?.id}`,
      headers: adminHeaders(),
    });
    expect(cross.statusCode).toBe(404);

    // Change the data, restore the target: the backup's rows are back.
    const ordersUrl = urlWithDatabase(env.serverUrl, `${env.name}_orders`);
    await withClient(ordersUrl, (client) => client.query('DELETE FROM item WHERE id > 10'));
    const restore = await waitForJob(
      api,
      await postJob(api, `/api/targets/orders/backups/${orders.result?.id}/restore`, {
        confirm: `${env.name}_orders`,
      }),
    );
    expect(restore.error).toBeNull();
    const count = await withClient(ordersUrl, async (client) => {
      const { rows } = await client.query<{ n: string }>('SELECT count(*) AS n FROM item');
      return Number(rows[0]?.n);
    });
    expect(count).toBe(50);
  });

  it('backs up a database created after start at the next scheduled run', async () => {
    const late = await database('d2', 7);
    const target = `second/${late}`;
    const found = await vi.waitFor(
      async () => {
        const backups = await backupsOf(target);
        if (backups.length === 0) throw new Error(`no backup of ${target} yet`);
        return backups;
      },
      { timeout: 60_000, interval: 250 },
    );
    expect(found[0]).toMatchObject({ target, server: 'second', database: late });
    // Stored under targets/<server>/<database>/.
    expect(await readdir(path.join(env.backupDir, 'targets', 'second', late))).toContain(
      `backup-${found[0]?.id}.manifest.json`,
    );
  });

  it('reloads the targets file on request: a removed target loses its schedule, keeps its backups', async () => {
    const text = targetsYaml(`${env.name}_orders`, `${env.name}_billing`).replace(
      / {2}everything:[\s\S]*$/,
      '',
    );
    await writeFile(targetsFile, text);
    // The API reads it again itself, and every worker (as SIGHUP makes one worker do).
    const reload = await api.app.inject({
      method: 'POST',
      url: '/api/targets/reload',
      headers: adminHeaders(),
    });
    expect(reload.statusCode, reload.body).toBe(202);
    await worker.waitForLine((line) => line.msg === 'targets reloaded');
    await worker.waitForLine(
      (line) =>
        line.msg === 'schedules of removed targets removed' &&
        JSON.stringify(line.removed).includes('discover-backup.everything'),
    );
    const schedulers = await api.services.queues.backups.getJobSchedulers(0, -1);
    expect(schedulers.map((scheduler) => scheduler.key)).not.toContain(
      'discover-backup.everything',
    );
    // Its databases' backups are still in the catalog, listed as targets of the catalog.
    const response = await api.app.inject({
      method: 'GET',
      url: '/api/targets',
      headers: adminHeaders(),
    });
    const names = json<{ data: { name: string; kind: string }[] }>(response).data;
    expect(names).toContainEqual(
      expect.objectContaining({ name: `second/${env.name}_d1`, kind: 'catalog' }),
    );
  });

  it('refuses a bad targets file at start, naming the target and key, never a secret', async () => {
    // `${NAME}` in the file: a variable that is not set anywhere.
    const unsetVariable = ['$', '{NOT_SET_ANYWHERE}'].join('');
    const cases: { text: string; says: RegExp }[] = [
      {
        text: 'servers:\n  a: { url: "postgres://u@h/db", colour: blue }\ntargets: {}\n',
        says: /servers\.a/,
      },
      {
        text: 'servers:\n  a: { url: "mysql://u:hunter2-secret@h/db" }\ntargets: {}\n',
        says: /servers\.a\.url/,
      },
      {
        text: `servers:\n  a: { url: "postgres://u@h/db", password: "${unsetVariable}" }\ntargets:\n  t: { server: a, database: x }\n`,
        says: /NOT_SET_ANYWHERE/,
      },
      {
        text: 'servers:\n  a: { url: "postgres://u@h/db" }\ntargets:\n  t: { server: a, database: x }\n  t: { server: a, database: y }\n',
        says: /t/,
      },
    ];
    for (const { text, says } of cases) {
      const file = path.join(dir, `bad-${says.source.replace(/\W/g, '')}.yaml`);
      await writeFile(file, text);
      const bad = new WorkerProcess({ ...env.env, TARGETS_FILE: file });
      const { code } = await bad.exited;
      const stderr = bad.stderr.join('');
      expect(code, stderr).not.toBe(0);
      expect(stderr).toMatch(/targets file/);
      expect(stderr).toMatch(says);
      expect(stderr).not.toContain('hunter2-secret');
    }
  });
});
