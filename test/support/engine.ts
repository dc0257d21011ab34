import { type Config, createLogger, loadConfig } from '@pgkeep/core';
import type { EngineContext, RunContext } from '@pgkeep/engine';
import { AdvisoryLocks, libpqEnv, parseDatabaseUrl, toolVersion, withDatabase } from '@pgkeep/pg';
import { createBackupStore, createKeyRing } from '@pgkeep/storage';

/**
 * The engine a worker builds at start (same storage, key ring, locks and tools), in the test's
 * own process: for tests that run many jobs and want no queue in between.
 */
export async function createTestEngine(env: Record<string, string>): Promise<EngineContext> {
  const config: Config = loadConfig({ ...env, LOG_LEVEL: 'silent' }, { requireAuth: false });
  const logger = createLogger('silent', 'pgkeep-engine-test');
  const target = parseDatabaseUrl(config.DATABASE_URL);
  const toolEnv = libpqEnv(target, { PATH: process.env.PATH });
  const storage = await createBackupStore(config, logger);
  await storage.ensureDir();
  return {
    config,
    storage,
    keyRing: await createKeyRing(config),
    locks: new AdvisoryLocks(
      withDatabase(target, config.MAINTENANCE_DATABASE),
      config.LOCK_NAMESPACE,
      logger,
    ),
    target,
    logger,
    pgDump: await toolVersion('pg_dump', toolEnv),
    pgRestore: await toolVersion('pg_restore', toolEnv),
  };
}

/** A run of one job outside a worker: no progress, no earlier result. */
export function testRun(engine: EngineContext, overrides: Partial<RunContext> = {}): RunContext {
  return { jobId: null, logger: engine.logger, ...overrides };
}
