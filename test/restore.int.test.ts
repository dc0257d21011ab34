import { createHash, randomBytes } from 'node:crypto';
import { copyFile, open, readFile, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  artifactFilename,
  type BackupManifest,
  type JobResult,
  manifestFilename,
  newBackupId,
} from '@pgkeep/core';
import { scratchDatabasePrefix } from '@pgkeep/pg';
import { enqueue } from '@pgkeep/queue';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  adminHeaders,
  json,
  type PolledJob,
  postJob,
  startConnectedApi,
  type TestApi,
  type VerifyVerdict,
  verifyVerdict,
  waitForJob,
} from './support/api.js';
import { existingTables, panelTables, seedPanelSchema, tableRows } from './support/panel-schema.js';
import {
  createTestEnv,
  dropDatabase,
  type TestEnv,
  urlWithDatabase,
  withClient,
} from './support/test-env.js';
import { startWorker, type WorkerProcess } from './support/worker-process.js';

type RestoreResult = JobResult<'restore'>;

let env: TestEnv;
let api: TestApi;
let worker: WorkerProcess;
/** Databases made by the restores here (other targets, previous databases): dropped at the end. */
const extraDatabases: string[] = [];

beforeAll(async () => {
  env = await createTestEnv('restore');
  await seedPanelSchema(env.databaseUrl);
  [api, worker] = await Promise.all([startConnectedApi(env.env), startWorker(env.env)]);
});

afterAll(async () => {
  await worker?.stop();
  await api?.close();
  for (const name of extraDatabases) await dropDatabase(env.serverUrl, name);
  await env?.cleanup();
});

const databaseUrl = (name: string) => urlWithDatabase(env.serverUrl, name);

/** Every table and view of a database with all its rows: what "the data" means to a user. */
async function snapshot(url: string): Promise<Record<string, string[]>> {
  const tables: Record<string, string[]> = {};
  for (const table of await existingTables(url)) tables[table] = await tableRows(url, table);
  return tables;
}

async function invoiceNumber(url: string): Promise<string> {
  return withClient(url, async (client) => {
    const { rows } = await client.query<{ n: string }>(
      'SELECT last_value::text AS n FROM "InvoiceNumber"',
    );
    return rows[0]?.n ?? 'missing';
  });
}

async function databaseInfo(name: string) {
  return withClient(env.serverUrl, async (client) => {
    const { rows } = await client.query<{ allowConnections: boolean; connectionLimit: number }>(
      `SELECT datallowconn AS "allowConnections", datconnlimit AS "connectionLimit"
       FROM pg_database WHERE datname = $1`,
      [name],
    );
    return rows[0];
  });
}

/** The previous database is closed to connections; a rollback would open it, as here. */
async function openPreviousDatabase(name: string): Promise<string> {
  await withClient(env.serverUrl, (client) =>
    client.query(`ALTER DATABASE "${name}" ALLOW_CONNECTIONS true`),
  );
  return databaseUrl(name);
}

/** This deployment's scratch databases (the server is shared with other files' restores). */
async function temporaryDatabases(): Promise<string[]> {
  const namespace = env.env.LOCK_NAMESPACE ?? env.name;
  return withClient(env.serverUrl, async (client) => {
    const { rows } = await client.query<{ datname: string }>(
      `SELECT datname FROM pg_database
       WHERE starts_with(datname, $1) OR starts_with(datname, $2) ORDER BY 1`,
      [scratchDatabasePrefix('restore', namespace), scratchDatabasePrefix('verify', namespace)],
    );
    return rows.map((row) => row.datname);
  });
}

/**
 * No temporary restore (or verify scratch) database of this deployment is left. Bounded poll:
 * a failed restore's drop may still be under way when its job reports the failure.
 */
async function expectNoTemporaryDatabase(): Promise<void> {
  await vi.waitFor(async () => expect(await temporaryDatabases()).toEqual([]), {
    timeout: 20_000,
    interval: 100,
  });
}

async function backup(body: Record<string, unknown> = {}): Promise<BackupManifest> {
  const job = await waitForJob(api, await postJob(api, '/api/backup', body));
  expect(job.error).toBeNull();
  expect(job.state).toBe('completed');
  return job.result as unknown as BackupManifest;
}

async function restore(id: string, body: Record<string, unknown>): Promise<PolledJob> {
  return waitForJob(api, await postJob(api, `/api/backup/${id}/restore`, body));
}

/** A verify's verdict: completed when the backup passed, failed as VERIFY_FAILED when not. */
async function verify(id: string, body?: Record<string, unknown>): Promise<VerifyVerdict> {
  return verifyVerdict(await waitForJob(api, await postJob(api, `/api/backup/${id}/verify`, body)));
}

function restoreResult(job: PolledJob): RestoreResult {
  expect(job.error).toBeNull();
  expect(job.state).toBe('completed');
  return job.result as unknown as RestoreResult;
}

/** Remembers a database a restore made, so it is dropped at the end. */
function track(name: string | null | undefined): string {
  if (!name) throw new Error('expected a database name');
  extraDatabases.push(name);
  return name;
}

/** A second backup with the same bytes under a new id, so each corruption has its own. */
async function copyBackup(manifest: BackupManifest): Promise<BackupManifest> {
  const id = newBackupId();
  const copy = {
    ...manifest,
    id,
    filename: artifactFilename(id, manifest.format, manifest.compression),
  };
  await copyFile(
    path.join(env.backupDir, manifest.filename),
    path.join(env.backupDir, copy.filename),
  );
  await writeManifest(copy);
  return copy;
}

async function writeManifest(manifest: BackupManifest): Promise<void> {
  await writeFile(
    path.join(env.backupDir, manifestFilename(manifest.id)),
    `${JSON.stringify(manifest, null, 2)}\n`,
  );
}

const artifactPath = (manifest: BackupManifest) => path.join(env.backupDir, manifest.filename);

/** Changes of every kind a restore must undo. */
async function changeEverything(url: string, extraTable: string): Promise<void> {
  await withClient(url, (client) =>
    client.query(`
      DELETE FROM "WhatsappMessage" WHERE id % 10 = 0;
      UPDATE "Payment" SET amount = amount + 1, note = 'changed' WHERE id <= 100;
      UPDATE "User" SET settings = '{"changed": true}' WHERE id <= 20;
      DROP TABLE user_audit;
      CREATE TABLE "${extraTable}" (id int PRIMARY KEY, what text);
      INSERT INTO "${extraTable}" VALUES (1, 'added after the backup');
      SELECT setval('"InvoiceNumber"', 9999);
    `),
  );
}

describe('restoring a full backup', () => {
  it.each([
    { format: 'custom', compression: 'zstd' },
    { format: 'plain', compression: 'gzip' },
  ] as const)(
    'a $format/$compression backup brings every table back and keeps the replaced database',
    async (options) => {
      const atBackup = await snapshot(env.databaseUrl);
      expect(Object.keys(atBackup)).toEqual(expect.arrayContaining(panelTables));
      expect(await invoiceNumber(env.databaseUrl)).toBe('1234');
      const manifest = await backup(options);
      expect(manifest).toMatchObject(options);

      const extraTable = `AddedLater_${options.format}`;
      await changeEverything(env.databaseUrl, extraTable);
      const changed = await snapshot(env.databaseUrl);
      expect(changed).not.toHaveProperty('public.user_audit');
      expect(changed).toHaveProperty([`public.${extraTable}`]);

      const result = restoreResult(await restore(manifest.id, { confirm: env.name }));
      track(result.previousDatabase);
      expect(result).toMatchObject({ backupId: manifest.id, target: env.name, mode: 'database' });
      expect(result.rowCounts).toEqual(manifest.rowCounts);

      const restored = await snapshot(env.databaseUrl);
      for (const table of panelTables) {
        expect(restored[table], table).toEqual(atBackup[table]);
      }
      expect(restored).toEqual(atBackup);
      expect(await existingTables(env.databaseUrl)).toContain('public.user_audit');
      expect(await existingTables(env.databaseUrl)).not.toContain(`public.${extraTable}`);
      expect(await invoiceNumber(env.databaseUrl)).toBe('1234');

      // The replaced database is kept for rollback, closed, with the changes still in it.
      const previous = result.previousDatabase ?? '';
      expect(previous.startsWith(`${env.name}_pre_restore_`)).toBe(true);
      expect(await databaseInfo(previous)).toMatchObject({ allowConnections: false });
      const previousUrl = await openPreviousDatabase(previous);
      expect(await snapshot(previousUrl)).toEqual(changed);
      expect(await invoiceNumber(previousUrl)).toBe('9999');

      await expectNoTemporaryDatabase();
    },
  );

  it('restores into another database, leaving the source alone, and replaces it the second time', async () => {
    const atBackup = await snapshot(env.databaseUrl);
    const manifest = await backup();
    await withClient(env.databaseUrl, (client) =>
      client.query(`UPDATE "Payment" SET note = 'changed after the backup' WHERE id <= 50`),
    );
    const source = await snapshot(env.databaseUrl);
    expect(source).not.toEqual(atBackup);

    const copy = track(`${env.name}_copy`);
    const first = restoreResult(await restore(manifest.id, { target: copy, confirm: copy }));
    expect(first).toMatchObject({ target: copy, mode: 'database', previousDatabase: null });
    expect(await snapshot(databaseUrl(copy))).toEqual(atBackup);
    expect(await invoiceNumber(databaseUrl(copy))).toBe('1234');
    expect(await snapshot(env.databaseUrl)).toEqual(source);

    await withClient(databaseUrl(copy), (client) =>
      client.query(`DELETE FROM "Payment" WHERE id > 400`),
    );
    const copyChanged = await snapshot(databaseUrl(copy));

    const second = restoreResult(await restore(manifest.id, { target: copy, confirm: copy }));
    const previous = track(second.previousDatabase);
    expect(previous.startsWith(`${copy}_pre_restore_`)).toBe(true);
    expect(await snapshot(databaseUrl(copy))).toEqual(atBackup);
    expect(await databaseInfo(previous)).toMatchObject({ allowConnections: false });
    expect(await snapshot(await openPreviousDatabase(previous))).toEqual(copyChanged);
    expect(await snapshot(env.databaseUrl)).toEqual(source);
    await expectNoTemporaryDatabase();
  });

  it('carries database-level settings and the connection limit over to the restored database', async () => {
    await withClient(env.serverUrl, async (client) => {
      await client.query(`ALTER DATABASE "${env.name}" SET work_mem = '7MB'`);
      await client.query(`ALTER DATABASE "${env.name}" CONNECTION LIMIT 50`);
    });
    const manifest = await backup();
    const result = restoreResult(await restore(manifest.id, { confirm: env.name }));
    track(result.previousDatabase);

    expect(await databaseInfo(env.name)).toMatchObject({
      allowConnections: true,
      connectionLimit: 50,
    });
    const settings = await withClient(env.serverUrl, async (client) => {
      const { rows } = await client.query<{ setting: string }>(
        `SELECT unnest(s.setconfig) AS setting FROM pg_db_role_setting s
         JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = $1 AND s.setrole = 0`,
        [env.name],
      );
      return rows.map((row) => row.setting);
    });
    expect(settings).toContain('work_mem=7MB');
    const workMem = await withClient(env.databaseUrl, async (client) => {
      const { rows } = await client.query<{ work_mem: string }>('SHOW work_mem');
      return rows[0]?.work_mem;
    });
    expect(workMem).toBe('7MB');
  });

  it('carries database privileges and per-role settings over to the restored database', async () => {
    const reader = `pgkeep_reader_${randomBytes(4).toString('hex')}`;
    const grants = () =>
      withClient(env.serverUrl, async (client) => {
        const { rows } = await client.query<{ grant: string }>(
          `SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END
                  || ' ' || a.privilege_type AS grant
           FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = $1 ORDER BY 1`,
          [env.name],
        );
        return rows.map((row) => row.grant);
      });
    const readerSettings = () =>
      withClient(env.serverUrl, async (client) => {
        const { rows } = await client.query<{ setting: string }>(
          `SELECT unnest(s.setconfig) AS setting FROM pg_db_role_setting s
           JOIN pg_database d ON d.oid = s.setdatabase
           WHERE d.datname = $1 AND s.setrole = $2::regrole`,
          [env.name, reader],
        );
        return rows.map((row) => row.setting);
      });
    try {
      await withClient(env.serverUrl, async (client) => {
        await client.query(`CREATE ROLE ${reader} LOGIN`);
        await client.query(`REVOKE ALL ON DATABASE "${env.name}" FROM PUBLIC`);
        await client.query(`GRANT CONNECT ON DATABASE "${env.name}" TO ${reader}`);
        await client.query(`ALTER ROLE ${reader} IN DATABASE "${env.name}" SET work_mem = '3MB'`);
      });
      const before = await grants();
      expect(before).toContain(`${reader} CONNECT`);
      expect(before.filter((grant) => grant.startsWith('PUBLIC '))).toEqual([]);

      const manifest = await backup();
      const result = restoreResult(await restore(manifest.id, { confirm: env.name }));
      track(result.previousDatabase);

      expect(await grants()).toEqual(before);
      expect(await readerSettings()).toEqual(['work_mem=3MB']);
    } finally {
      await withClient(env.serverUrl, async (client) => {
        await client.query(`GRANT CONNECT, TEMPORARY ON DATABASE "${env.name}" TO PUBLIC`);
        await client.query(`DROP OWNED BY ${reader}`).catch(() => {});
        await client.query(`DROP ROLE IF EXISTS ${reader}`);
      });
    }
  });
});

describe('asking for a restore', () => {
  async function postRestore(id: string, payload?: unknown, target: TestApi = api) {
    return target.app.inject({
      method: 'POST',
      url: `/api/backup/${id}/restore`,
      headers: adminHeaders(),
      ...(payload === undefined ? {} : { payload: payload as object }),
    });
  }

  it('needs a confirmation naming the target, a valid target and a known backup; queues nothing otherwise', async () => {
    const manifest = await backup();
    const before = await api.services.queues.maintenance.getJobCounts();
    const refused = [
      { payload: {}, status: 400, code: 'CONFIRMATION_REQUIRED' },
      { payload: { confirm: 'some_other_db' }, status: 400, code: 'CONFIRMATION_REQUIRED' },
      { payload: { confirm: env.name.toUpperCase() }, status: 400, code: 'CONFIRMATION_REQUIRED' },
      {
        payload: { target: `${env.name}_x`, confirm: env.name },
        status: 400,
        code: 'CONFIRMATION_REQUIRED',
      },
      {
        payload: { target: 'postgres', confirm: 'postgres' },
        status: 400,
        code: 'INVALID_DATABASE_NAME',
      },
      {
        payload: { target: 'template1', confirm: 'template1' },
        status: 400,
        code: 'INVALID_DATABASE_NAME',
      },
      { payload: { confirm: env.name, force: true }, status: 400, code: 'VALIDATION_ERROR' },
      { payload: { target: 'a"b', confirm: 'a"b' }, status: 400, code: 'VALIDATION_ERROR' },
      { payload: { target: 'a b', confirm: 'a b' }, status: 400, code: 'VALIDATION_ERROR' },
    ];
    for (const { payload, status, code } of refused) {
      const response = await postRestore(manifest.id, payload);
      expect(response.statusCode, JSON.stringify(payload)).toBe(status);
      expect(json(response).error.code, JSON.stringify(payload)).toBe(code);
    }
    const missing = await postRestore('2020-01-01T00-00-00-000Z-000000000000', {
      confirm: env.name,
    });
    expect(missing.statusCode).toBe(404);
    expect(json(missing).error.code).toBe('BACKUP_NOT_FOUND');
    // The message tells the admin exactly what to send.
    const unconfirmed = await postRestore(manifest.id, {});
    expect(json(unconfirmed).error.message).toContain(`"confirm": "${env.name}"`);

    expect(await api.services.queues.maintenance.getJobCounts()).toEqual(before);
  });

  it('is refused by an API and by a worker that have restores disabled', async () => {
    const manifest = await backup();
    const before = await snapshot(env.databaseUrl);
    const disabledEnv = { ...env.env, RESTORE_ENABLED: 'false', QUEUE_PREFIX: `${env.name}_off` };
    const [disabledApi, disabledWorker] = await Promise.all([
      startConnectedApi(disabledEnv),
      startWorker(disabledEnv),
    ]);
    try {
      const response = await postRestore(manifest.id, { confirm: env.name }, disabledApi);
      expect(response.statusCode).toBe(403);
      expect(json(response).error.code).toBe('RESTORE_DISABLED');
      const queued = await disabledApi.services.queues.maintenance.getJobs();
      expect(queued.filter((job) => job.name === 'restore')).toEqual([]);

      // Straight onto the queue, past the API: the worker checks again before touching anything.
      const jobId = await enqueue(disabledApi.services.queues, disabledApi.config, 'restore', {
        backupId: manifest.id,
        target: env.name,
        requestedBy: 'admin@example.com',
        requestedAt: new Date().toISOString(),
      });
      const job = await waitForJob(disabledApi, jobId);
      expect(job.state).toBe('failed');
      expect(job.error?.code).toBe('RESTORE_DISABLED');
      expect(job.attemptsMade).toBe(1);
    } finally {
      await disabledWorker.stop();
      await disabledApi.close();
    }
    expect(await snapshot(env.databaseUrl)).toEqual(before);
  });
});

describe('a damaged backup is never restored', () => {
  let original: BackupManifest;

  beforeAll(async () => {
    original = await backup();
  });

  async function expectRefused(manifest: BackupManifest, codes: string[]) {
    const before = await snapshot(env.databaseUrl);
    const job = await restore(manifest.id, { confirm: env.name });
    expect(job.state).toBe('failed');
    expect(codes).toContain(job.error?.code);
    expect(job.attemptsMade).toBe(1);
    expect(await snapshot(env.databaseUrl)).toEqual(before);
    expect(await databaseInfo(env.name)).toMatchObject({ allowConnections: true });
    await expectNoTemporaryDatabase();
    return job;
  }

  it('a truncated artifact fails its checksum, in a restore and in a verify', async () => {
    const manifest = await copyBackup(original);
    await truncate(artifactPath(manifest), Math.floor(manifest.size / 2));

    const job = await expectRefused(manifest, ['CHECKSUM_MISMATCH']);
    expect(job.error?.message).toContain(manifest.id);
    const verified = await verify(manifest.id);
    expect(verified.ok).toBe(false);
    expect(verified.checks.find((check) => check.name === 'sha256')).toMatchObject({ ok: false });
  });

  it('one flipped byte fails its checksum, in a restore and in a verify', async () => {
    const manifest = await copyBackup(original);
    const handle = await open(artifactPath(manifest), 'r+');
    try {
      const at = Math.floor(manifest.size / 2);
      const byte = Buffer.alloc(1);
      await handle.read(byte, 0, 1, at);
      byte[0] = (byte[0] ?? 0) ^ 0xff;
      await handle.write(byte, 0, 1, at);
    } finally {
      await handle.close();
    }

    await expectRefused(manifest, ['CHECKSUM_MISMATCH']);
    const verified = await verify(manifest.id, { restore: true });
    expect(verified.ok).toBe(false);
    expect(verified.checks.find((check) => check.name === 'sha256')).toMatchObject({ ok: false });
    await expectNoTemporaryDatabase();
  });

  it('a truncated artifact whose manifest was rewritten to match fails to read and to restore', async () => {
    const manifest = await copyBackup(original);
    await truncate(artifactPath(manifest), Math.floor(manifest.size / 2));
    const bytes = await readFile(artifactPath(manifest));
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const forged = {
      ...manifest,
      size: bytes.length,
      sha256,
      copies: manifest.copies.map((copy) => ({ ...copy, size: bytes.length, sha256 })),
    };
    await writeManifest(forged);

    const verified = await verify(manifest.id);
    expect(verified.ok).toBe(false);
    expect(verified.checks.find((check) => check.name === 'sha256')).toMatchObject({ ok: true });
    expect(verified.checks.find((check) => check.name === 'archive-read')).toMatchObject({
      ok: false,
    });

    await expectRefused(forged, ['PG_RESTORE_FAILED', 'COMPRESSION_FAILED']);
  });

  it('an intact backup passes every check of a verify with a scratch restore', async () => {
    const verified = await verify(original.id, { restore: true });
    expect(verified.checks).toMatchObject([
      { name: 'sha256', ok: true },
      { name: 'archive-read', ok: true },
      { name: 'scratch-restore', ok: true },
      { name: 'row-counts', ok: true },
    ]);
    expect(verified.ok).toBe(true);
    await expectNoTemporaryDatabase();
  });
});

describe('a restore that fails halfway', () => {
  it('leaves the target as it was when pg_restore stops on a missing role', async () => {
    const role = `pgkeep_ghost_${randomBytes(4).toString('hex')}`;
    try {
      await withClient(env.databaseUrl, async (client) => {
        await client.query(`CREATE ROLE ${role} NOLOGIN`);
        await client.query(`CREATE TABLE ghost_notes (id int PRIMARY KEY, note text)`);
        await client.query(`INSERT INTO ghost_notes VALUES (1, 'owned by a role that will go')`);
        await client.query(`ALTER TABLE ghost_notes OWNER TO ${role}`);
      });
      const manifest = await backup();
      await withClient(env.databaseUrl, async (client) => {
        await client.query(`ALTER TABLE ghost_notes OWNER TO postgres`);
        await client.query(`DROP ROLE ${role}`);
      });
      const before = await snapshot(env.databaseUrl);

      const job = await restore(manifest.id, { confirm: env.name });
      expect(job.state).toBe('failed');
      expect(job.error?.code).toBe('PG_RESTORE_FAILED');
      expect(job.error?.message).toContain(role);
      expect(job.attemptsMade).toBe(1);
      expect(await snapshot(env.databaseUrl)).toEqual(before);
      expect(await databaseInfo(env.name)).toMatchObject({ allowConnections: true });
      await expectNoTemporaryDatabase();
    } finally {
      await withClient(env.databaseUrl, (client) =>
        client.query(`DO $$ BEGIN
          IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${role}') THEN
            EXECUTE 'REASSIGN OWNED BY ${role} TO postgres';
            EXECUTE 'DROP ROLE ${role}';
          END IF;
        END $$`),
      );
    }
  });
});

describe('restoring a table backup', () => {
  it('puts back only the backup’s tables, in the same database', async () => {
    const manifest = await backup({ tables: ['WhatsappMessage'] });
    const atBackup = await snapshot(env.databaseUrl);
    await withClient(env.databaseUrl, (client) =>
      client.query(`
        DELETE FROM "WhatsappMessage" WHERE id % 7 = 0;
        UPDATE "WhatsappMessage" SET body = 'edited' WHERE id <= 30;
        UPDATE "Payment" SET note = 'changed after the table backup' WHERE id <= 10;
      `),
    );
    const changed = await snapshot(env.databaseUrl);

    const result = restoreResult(await restore(manifest.id, { confirm: env.name }));
    expect(result).toMatchObject({ mode: 'tables', target: env.name, previousDatabase: null });
    expect(await tableRows(env.databaseUrl, 'public.WhatsappMessage')).toEqual(
      atBackup['public.WhatsappMessage'],
    );
    const after = await snapshot(env.databaseUrl);
    expect(Object.keys(after)).toEqual(Object.keys(atBackup));
    for (const table of Object.keys(after).filter((t) => t !== 'public.WhatsappMessage')) {
      expect(after[table], table).toEqual(changed[table]);
    }
  });

  it('refuses, changing nothing, when other tables depend on the restored one', async () => {
    const manifest = await backup({ tables: ['User'] });
    await withClient(env.databaseUrl, (client) =>
      client.query(`UPDATE "User" SET settings = '{"after": "backup"}' WHERE id <= 10`),
    );
    const before = await snapshot(env.databaseUrl);

    const job = await restore(manifest.id, { confirm: env.name });
    expect(job.state).toBe('failed');
    expect(job.error?.message).toMatch(/depends? on/);
    expect(job.attemptsMade).toBe(1);
    const after = await snapshot(env.databaseUrl);
    for (const table of ['public.User', 'public.WhatsappMessage', 'public.Payment']) {
      expect(after[table], table).toEqual(before[table]);
    }
    expect(after).toEqual(before);
  });
});

describe('list-valued database settings', () => {
  it('keeps a search_path setting as it was', async () => {
    await withClient(env.serverUrl, (client) =>
      client.query(`ALTER DATABASE "${env.name}" SET search_path = "$user", public`),
    );
    try {
      const showSearchPath = () =>
        withClient(env.databaseUrl, async (client) => {
          const { rows } = await client.query<{ search_path: string }>('SHOW search_path');
          return rows[0]?.search_path;
        });
      const before = await showSearchPath();
      expect(before).toBe('"$user", public');
      const manifest = await backup();
      const result = restoreResult(await restore(manifest.id, { confirm: env.name }));
      track(result.previousDatabase);
      // What the application notices first: its unqualified table names still resolve.
      const users = await withClient(env.databaseUrl, async (client) => {
        const { rows } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM "User"');
        return rows[0]?.n;
      }).catch((error: Error) => error.message);
      expect(users).toBe(200);
      expect(await showSearchPath()).toBe(before);
    } finally {
      await withClient(env.serverUrl, (client) =>
        client.query(`ALTER DATABASE "${env.name}" RESET search_path`),
      );
    }
  });
});
