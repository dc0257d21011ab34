import { pgDumpSupportsServer, serverVersion } from '@pgkeep/pg';
import { readHeartbeats } from '@pgkeep/queue';
import type { ApiServices } from './api-services.js';

export interface Check {
  ok: boolean;
  [detail: string]: unknown;
}

/** The work's answer, or a failed check once `ms` have passed or the work threw. */
export async function timed<T extends Check>(
  work: () => Promise<T>,
  ms = 3_000,
): Promise<T | Check> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work(),
      new Promise<Check>((resolve) => {
        timer = setTimeout(() => resolve({ ok: false, error: `no answer within ${ms} ms` }), ms);
      }),
    ]);
  } catch (error) {
    return { ok: false, error: (error as Error).message };
  } finally {
    clearTimeout(timer);
  }
}

/** A connection still opening (just after start) is given the check's time to get ready. */
export function whenReady(redis: ApiServices['redis'], ms = 2_500): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      redis.off('ready', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    redis.once('ready', done);
  });
}

export type Heartbeats = Awaited<ReturnType<typeof readHeartbeats>>;

/**
 * The dependencies every health answer starts from, each within its own time limit. pg_dump is
 * checked through the workers' heartbeats: the API never runs it, and what matters is the
 * pg_dump of a live worker, compared with the server's version.
 */
export async function probeDependencies(services: ApiServices) {
  const [redis, database, storage, workers] = await Promise.all([
    timed(async () => {
      await whenReady(services.redis);
      return { ok: (await services.redis.ping()) === 'PONG' };
    }),
    timed(async () => {
      const version = await serverVersion(services.db);
      return { ok: true, serverVersion: version.version, serverVersionNum: version.num };
    }),
    timed(async () => {
      try {
        await services.storage.checkWritable();
      } catch (error) {
        // No path or system error here: this answer is public. The log has the details.
        services.logger.warn({ err: error }, 'backup directory is not writable');
        return { ok: false, error: 'the backup directory is not writable' };
      }
      return { ok: true };
    }),
    timed(async () => {
      await whenReady(services.redis);
      const beats = await readHeartbeats(services.redis, services.config.REDIS_PREFIX);
      return { ok: beats.length > 0, alive: beats.length, beats };
    }),
  ]);
  const beats: Heartbeats = 'beats' in workers ? (workers.beats as Heartbeats) : [];
  const serverNum = 'serverVersionNum' in database ? Number(database.serverVersionNum) : undefined;
  const first = beats[0];
  const pgDump: Check = first
    ? {
        ok:
          serverNum === undefined ||
          beats.every((beat) => pgDumpSupportsServer(beat.pgDump.major, serverNum)),
        version: first.pgDump.version,
        versions: [...new Set(beats.map((beat) => beat.pgDump.version))],
      }
    : { ok: false, error: 'no worker is running, so no pg_dump is known' };
  const checks = {
    pgDump,
    redis,
    database: {
      ok: database.ok,
      ...('serverVersion' in database ? { serverVersion: database.serverVersion } : {}),
      ...('error' in database ? { error: database.error } : {}),
    },
    storage,
    workers: {
      ok: workers.ok,
      alive: 'alive' in workers ? Number(workers.alive) : 0,
      ...('error' in workers ? { error: workers.error } : {}),
    },
  };
  return { checks, beats };
}

export type DependencyChecks = Awaited<ReturnType<typeof probeDependencies>>['checks'];

/** What anyone may read: pass or fail per check, pg_dump's version; no error text, no counts. */
export interface PublicHealth {
  healthy: boolean;
  failing: (keyof PublicHealth['checks'])[];
  checks: {
    pgDump: { ok: boolean; version?: string };
    redis: { ok: boolean };
    database: { ok: boolean };
    storage: { ok: boolean };
    workers: { ok: boolean };
  };
}

/**
 * The quick, public check: every dependency up, or 503 naming those that are not. Built field
 * by field from the probe: raw errors (a PostgreSQL message names roles and databases), server
 * versions and worker counts stay in the admin's detail.
 */
export async function checkHealth(services: ApiServices): Promise<PublicHealth> {
  const { checks } = await probeDependencies(services);
  const failing = (Object.keys(checks) as (keyof typeof checks)[]).filter(
    (name) => !checks[name].ok,
  );
  const version = checks.pgDump.version;
  return {
    healthy: failing.length === 0,
    failing,
    checks: {
      pgDump: { ok: checks.pgDump.ok, ...(typeof version === 'string' ? { version } : {}) },
      redis: { ok: checks.redis.ok },
      database: { ok: checks.database.ok },
      storage: { ok: checks.storage.ok },
      workers: { ok: checks.workers.ok },
    },
  };
}
