import { ConfigError, createLogger, loadConfig } from '@pgkeep/core';
import { startWorkerRuntime } from './worker-runtime.js';

let config: ReturnType<typeof loadConfig>;
try {
  config = loadConfig(process.env);
} catch (error) {
  process.stderr.write(`${error instanceof ConfigError ? error.message : String(error)}\n`);
  process.exit(1);
}
const logger = createLogger(config.LOG_LEVEL, 'pgkeep-worker');

try {
  const runtime = await startWorkerRuntime(config, logger);
  // First SIGTERM/SIGINT: finish or abandon the running job within SHUTDOWN_TIMEOUT_MS.
  // A second signal: exit now; the children die with us (pdeathsig) and the job is retried.
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals += 1;
    if (signals > 1) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    logger.info({ signal }, 'shutting down');
    runtime.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
} catch (error) {
  logger.fatal({ err: error }, 'worker failed to start');
  process.exit(1);
}
