import { type Config, createLogger, loadConfig, loadTargets } from '@pgkeep/core';
import {
  type EngineContext,
  type RunContext,
  serverConnection,
  TargetRegistry,
} from '@pgkeep/engine';
import { AdvisoryLocks, toolVersion } from '@pgkeep/pg';
import { createKeyRing } from '@pgkeep/storage';

/**
 * The engine a worker builds at start for the target `default` (same store, key ring, locks
 * and tools), in the test's own process: for tests that run many jobs and want no queue in
 * between.
 */
export async function createTestEngine(env: Record<string, string>): Promise<EngineContext> {
  const config: Config = loadConfig({ ...env, LOG_LEVEL: 'silent' }, { requireAuth: false });
  const logger = createLogger('silent', 'pgkeep-engine-test');
  const keyRing = await createKeyRing(config);
  const registry = new TargetRegistry(config, logger, loadTargets(config, env), keyRing);
  const target = registry.require('default');
  const toolEnv = { PATH: process.env.PATH };
  return {
    config,
    storage: await registry.storeFor(target.info),
    keyRing,
    locks: new AdvisoryLocks(
      serverConnection(registry.targets.lockServer),
      config.LOCK_NAMESPACE,
      logger,
    ),
    target: target.database,
    maintenance: target.maintenance,
    targetInfo: target.info,
    logger,
    pgDump: await toolVersion('pg_dump', toolEnv),
    pgRestore: await toolVersion('pg_restore', toolEnv),
  };
}

/** A run of one job outside a worker: no progress, no earlier result. */
export function testRun(engine: EngineContext, overrides: Partial<RunContext> = {}): RunContext {
  return { jobId: null, logger: engine.logger, ...overrides };
}
