import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { inject } from 'vitest';

export const JWT_SECRET = 'test-secret-that-is-long-enough-for-hs256-0123456789';

/** A database, a queue prefix, a lock namespace and a backup directory of the test's own. */
export interface TestEnv {
  name: string;
  databaseUrl: string;
  serverUrl: string;
  redisUrl: string;
  backupDir: string;
  env: Record<string, string>;
  cleanup(): Promise<void>;
}

export function urlWithDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

export async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

export async function createDatabase(serverUrl: string, name: string): Promise<void> {
  await withClient(serverUrl, (client) => client.query(`CREATE DATABASE "${name}"`));
}

export async function dropDatabase(serverUrl: string, name: string): Promise<void> {
  await withClient(serverUrl, (client) =>
    client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`),
  );
}

/** Every Redis key under a test's prefixes (its queue prefix and any derived from it). */
export async function deleteRedisKeys(redisUrl: string, prefix: string): Promise<void> {
  const redis = new Redis(redisUrl);
  try {
    // The keys themselves are under `{prefix}` (a Redis Cluster hash tag).
    for (const pattern of [`${prefix}*`, `{${prefix}*`]) {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
        cursor = next;
        if (keys.length > 0) await redis.del(...keys);
      } while (cursor !== '0');
    }
  } finally {
    redis.disconnect();
  }
}

export async function createTestEnv(
  label: string,
  overrides: Record<string, string> = {},
): Promise<TestEnv> {
  const serverUrl = inject('databaseUrl');
  const redisUrl = inject('redisUrl');
  const name = `pgkeep_t_${label}_${randomBytes(4).toString('hex')}`;
  await createDatabase(serverUrl, name);
  const databaseUrl = urlWithDatabase(serverUrl, name);
  const backupDir = await mkdtemp(path.join(os.tmpdir(), `pgkeep-${label}-`));
  const env: Record<string, string> = {
    DATABASE_URL: databaseUrl,
    MAINTENANCE_DATABASE: new URL(serverUrl).pathname.slice(1) || 'postgres',
    REDIS_URL: redisUrl,
    QUEUE_PREFIX: name,
    LOCK_NAMESPACE: name,
    BACKUP_DIR: backupDir,
    JWT_SECRET,
    LOG_LEVEL: 'info',
    NODE_ENV: 'test',
    // Short enough for crash tests to see a dead worker's job come back within seconds, long
    // enough that a busy machine renewing a live job's lock late does not look like a crash.
    JOB_LOCK_DURATION_MS: '5000',
    JOB_STALLED_INTERVAL_MS: '1000',
    WORKER_HEARTBEAT_MS: '1000',
    // No schedule fires in the middle of a test unless the test asks for one.
    AUTO_BACKUP_ENABLED: 'false',
    BACKUP_CLEANUP_SCHEDULE: 'off',
    // Refusal tests send many bad tokens from inject()'s one address; the limit on that has
    // tests of its own (api-token-policy.int.test.ts).
    AUTH_FAILURE_LIMIT: '0',
    ...overrides,
  };
  return {
    name,
    databaseUrl,
    serverUrl,
    redisUrl,
    backupDir,
    env,
    async cleanup() {
      // The test's database and every one named after it (a restore's replaced copy,
      // `<name>_pre_restore_…`, a copy restored beside it): the name is the test's own.
      const derived = await withClient(serverUrl, async (client) => {
        const { rows } = await client.query<{ datname: string }>(
          'SELECT datname FROM pg_database WHERE starts_with(datname, $1)',
          [name],
        );
        return rows.map((row) => row.datname);
      });
      for (const database of new Set([name, ...derived])) await dropDatabase(serverUrl, database);
      await rm(backupDir, { recursive: true, force: true });
      await deleteRedisKeys(redisUrl, name);
    },
  };
}
