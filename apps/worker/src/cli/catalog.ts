import { existsSync } from 'node:fs';
import { ConfigError, createLogger, loadConfig } from '@pgkeep/core';
import { rebuildCatalog } from '@pgkeep/engine';
import { AdvisoryLocks, parseDatabaseUrl, withDatabase } from '@pgkeep/pg';
import { createBackupStore } from '@pgkeep/storage';

/**
 * `npm run catalog:rebuild`: after the local disk (BACKUP_DIR) was lost, or on a new machine,
 * adds back every backup whose manifest a configured S3 destination holds. It waits for any
 * running delete, clean-up or restore, and prints what it added as JSON. Safe to run twice.
 */
// The same .env that `npm start` uses; variables already set win.
if (existsSync('.env')) process.loadEnvFile('.env');

let config: ReturnType<typeof loadConfig>;
try {
  config = loadConfig(process.env, { requireAuth: false });
} catch (error) {
  process.stderr.write(`${error instanceof ConfigError ? error.message : String(error)}\n`);
  process.exit(1);
}
// Warnings (an unreadable destination, manifests refused) go to stderr: stdout is the answer.
const logger = createLogger(
  config.LOG_LEVEL === 'info' ? 'warn' : config.LOG_LEVEL,
  'pgkeep-catalog',
  'stderr',
);
const storage = await createBackupStore(config, logger);
const target = parseDatabaseUrl(config.DATABASE_URL);
const locks = new AdvisoryLocks(
  withDatabase(target, config.MAINTENANCE_DATABASE),
  config.LOCK_NAMESPACE,
  logger,
);
// Each lock holds its own connection, closed on release: nothing else to close.
const outcome = await rebuildCatalog({ config, storage, locks, logger }, { wait: true });
const destinations = storage.destinations.map((destination) => destination.name);
process.stdout.write(`${JSON.stringify({ destinations, ...outcome }, null, 2)}\n`);
// 2: some destination could not be read; its backups may still be missing from the list.
process.exit(outcome && outcome.unreachable.length > 0 ? 2 : 0);
