import { ConfigError, createLogger, loadConfig, loadTargets } from '@pgkeep/core';
import { startWorkerRuntime, type WorkerRuntime } from './worker-runtime.js';

let config: ReturnType<typeof loadConfig>;
try {
  // The targets file too: a bad one stops the process here, with the same kind of message.
  config = loadConfig(process.env, { requireAuth: false });
  loadTargets(config, process.env);
} catch (error) {
  process.stderr.write(`${error instanceof ConfigError ? error.message : String(error)}\n`);
  process.exit(1);
}
const logger = createLogger(config.LOG_LEVEL, 'pgkeep-worker', { format: config.LOG_FORMAT });

// Handlers go in before anything starts, so a signal during start-up is a clean stop too.
// First SIGTERM/SIGINT: finish or abandon the running job within SHUTDOWN_TIMEOUT_MS.
// A second signal: exit now; the children die with us (pdeathsig) and the job is retried.
let runtime: WorkerRuntime | undefined;
let signals = 0;
const stop = () => {
  if (!runtime) return; // still starting: stopped as soon as it has started
  runtime.close().then(
    () => process.exit(0),
    (error: unknown) => {
      logger.error({ err: error }, 'shutdown failed');
      process.exit(1);
    },
  );
};
const onSignal = (signal: NodeJS.Signals) => {
  signals += 1;
  if (signals > 1) {
    logger.warn({ signal }, 'second signal: exiting now');
    process.exit(1);
  }
  logger.info({ signal }, 'shutting down');
  stop();
};
process.on('SIGTERM', onSignal);
process.on('SIGINT', onSignal);
// SIGHUP: read the targets file again; running jobs go on, schedules follow the file.
process.on('SIGHUP', () => {
  logger.info('SIGHUP: reloading the targets file');
  void runtime?.reload('SIGHUP');
});

try {
  runtime = await startWorkerRuntime(config, logger);
  if (signals > 0) stop();
} catch (error) {
  logger.fatal({ err: error }, 'worker failed to start');
  process.exit(1);
}
