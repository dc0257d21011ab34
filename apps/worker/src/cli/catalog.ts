import { existsSync } from 'node:fs';
import { ConfigError, createLogger, loadConfig, loadTargets } from '@pgkeep/core';
import { rebuildCatalog, serverConnection, TargetRegistry } from '@pgkeep/engine';
import { AdvisoryLocks } from '@pgkeep/pg';

/**
 * `npm run catalog:rebuild`: after the local disk (BACKUP_DIR) was lost, or on a new machine,
 * adds back every backup whose manifest a configured S3 destination holds. It waits for any
 * running delete, clean-up or restore, and prints what it added as JSON. Safe to run twice.
 */
// The same .env that `npm start` uses; variables already set win.
if (existsSync('.env')) process.loadEnvFile('.env');

let config: ReturnType<typeof loadConfig>;
let targetsConfig: ReturnType<typeof loadTargets>;
try {
  config = loadConfig(process.env, { requireAuth: false });
  targetsConfig = loadTargets(config, process.env);
} catch (error) {
  process.stderr.write(`${error instanceof ConfigError ? error.message : String(error)}\n`);
  process.exit(1);
}
// Warnings (an unreadable destination, manifests refused) go to stderr: stdout is the answer.
const logger = createLogger(
  config.LOG_LEVEL === 'info' ? 'warn' : config.LOG_LEVEL,
  'pgkeep-catalog',
  {
    format: config.LOG_FORMAT,
    to: 'stderr',
  },
);
const registry = new TargetRegistry(config, logger, targetsConfig);
const locks = new AdvisoryLocks(
  serverConnection(registry.targets.lockServer),
  config.LOCK_NAMESPACE,
  logger,
);
// Every target's prefix in every destination: configured targets and the databases discovery
// finds now. A target removed from the file is not looked for.
const { targets } = await registry.expand();
const outcomes: { target: string; added: string[]; unreachable: string[] }[] = [];
for (const target of targets) {
  const storage = await registry.storeFor(target.info);
  // Each lock holds its own connection, closed on release: nothing else to close.
  const outcome = await rebuildCatalog({ config, storage, locks, logger }, { wait: true });
  outcomes.push({
    target: target.info.name,
    added: outcome?.added ?? [],
    unreachable: outcome?.unreachable ?? [],
  });
}
const added = outcomes.flatMap((outcome) => outcome.added);
const unreachable = [...new Set(outcomes.flatMap((outcome) => outcome.unreachable))];
process.stdout.write(
  `${JSON.stringify({ destinations: config.BACKUP_DESTINATIONS, added, unreachable, targets: outcomes }, null, 2)}\n`,
);
// 2: some destination could not be read; its backups may still be missing from the list.
process.exit(unreachable.length > 0 ? 2 : 0);
