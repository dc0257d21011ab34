import 'vitest';
import type { TestProject } from 'vitest/node';
import { buildApps } from './processes.js';

declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string;
    redisUrl: string;
  }
}

/**
 * Integration tests talk to a real PostgreSQL and a real Redis: the ones named by
 * DATABASE_URL / REDIS_URL when both are set, else containers started by testcontainers when
 * a Docker engine is reachable, else the run stops with a message saying how to provide them.
 * First the apps are built, for the tests that start them as processes.
 */
export default async function setup(project: TestProject) {
  // Every run rebuilds: worker and API processes run apps/*/dist, never a stale one.
  await buildApps();
  const databaseUrl = process.env.DATABASE_URL;
  const redisUrl = process.env.REDIS_URL;
  if (databaseUrl && redisUrl) {
    project.provide('databaseUrl', databaseUrl);
    project.provide('redisUrl', redisUrl);
    return;
  }
  let stop: (() => Promise<void>) | undefined;
  try {
    const { PostgreSqlContainer } = await import('@testcontainers/postgresql');
    const { RedisContainer } = await import('@testcontainers/redis');
    const [postgres, redis] = await Promise.all([
      new PostgreSqlContainer('postgres:15').withUsername('postgres').start(),
      new RedisContainer('redis:7')
        .withCommand(['redis-server', '--maxmemory-policy', 'noeviction'])
        .start(),
    ]);
    project.provide('databaseUrl', postgres.getConnectionUri());
    project.provide('redisUrl', redis.getConnectionUrl());
    stop = async () => {
      await Promise.all([postgres.stop(), redis.stop()]);
    };
  } catch (error) {
    throw new Error(
      'integration tests need PostgreSQL and Redis: set DATABASE_URL and REDIS_URL ' +
        '(e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379 npm test) ' +
        `or run a Docker engine for testcontainers (${(error as Error).message})`,
    );
  }
  return stop;
}
