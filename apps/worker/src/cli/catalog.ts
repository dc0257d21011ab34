import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError, createLogger, loadConfig, loadTargets, readCommandLine } from '@pgkeep/core';
import { rebuildCatalog, serverConnection, TargetRegistry } from '@pgkeep/engine';
import { AdvisoryLocks } from '@pgkeep/pg';
import { createBackupStore, createKeyRing } from '@pgkeep/storage';

/**
 * `npm run catalog:rebuild`: after the local disk (BACKUP_DIR) was lost, or on a new machine,
 * adds back every backup whose manifest a configured S3 destination holds. It waits for any
 * running delete, clean-up or restore, and prints what it added as JSON. Safe to run twice.
 */
const usage = `usage: npm run catalog:rebuild -- [--dry-run]

Adds back to the catalog (BACKUP_DIR) every backup whose manifest a configured S3 destination
holds and the catalog lacks, for every target. Waits for a running delete, clean-up or
restore. Prints what it added as JSON on stdout; warnings go to stderr. A rebuild only adds:
it never removes or changes a manifest the catalog has.

options:
  --dry-run    print what it would add, write nothing, wait for no job
  -h, --help   this message

exit status: 0 done, 1 bad configuration, 2 a destination could not be read, 64 wrong call
`;

const values = readCommandLine(
  'catalog:rebuild',
  usage,
  () =>
    parseArgs({
      options: {
        'dry-run': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }).values,
);
const dryRun = values['dry-run'] === true;

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
  { format: config.LOG_FORMAT, to: 'stderr' },
);
const registry = new TargetRegistry(config, logger, targetsConfig);
const locks = new AdvisoryLocks(
  serverConnection(registry.targets.lockServer),
  config.LOCK_NAMESPACE,
  logger,
);
const keyRing = await createKeyRing(config);
// Every target's prefix in every destination: configured targets and the databases discovery
// finds now. A target removed from the file is not looked for.
const { targets } = await registry.expand();
const outcomes: { target: string; added: string[]; unreachable: string[] }[] = [];
for (const target of targets) {
  // Made here rather than by the registry, which creates the target's directory: a dry run
  // writes nothing, and a rebuild makes the directory itself.
  const storage = await createBackupStore(config, logger, {
    target: target.info.name,
    destinations: target.info.settings.destinations,
    keyRing,
  });
  // Each lock holds its own connection, closed on release: nothing else to close.
  const outcome = await rebuildCatalog({ config, storage, locks, logger }, { wait: true, dryRun });
  outcomes.push({
    target: target.info.name,
    added: outcome?.added ?? [],
    unreachable: outcome?.unreachable ?? [],
  });
}
const added = outcomes.flatMap((outcome) => outcome.added);
const unreachable = [...new Set(outcomes.flatMap((outcome) => outcome.unreachable))];
const answer = dryRun
  ? {
      dryRun: true,
      destinations: config.BACKUP_DESTINATIONS,
      wouldAdd: added,
      unreachable,
      targets: outcomes.map(({ added: wouldAdd, ...outcome }) => ({ ...outcome, wouldAdd })),
    }
  : { destinations: config.BACKUP_DESTINATIONS, added, unreachable, targets: outcomes };
process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
// 2: some destination could not be read; its backups may still be missing from the list.
process.exit(unreachable.length > 0 ? 2 : 0);
