import { ConfigError, createLogger, loadConfig, loadTargets } from '@pgkeep/core';
import { buildServer, closeServices, createServices } from './server.js';

let config: ReturnType<typeof loadConfig>;
try {
  // The targets file too: a bad one stops the process here, with the same kind of message.
  config = loadConfig(process.env);
  loadTargets(config, process.env);
} catch (error) {
  process.stderr.write(`${error instanceof ConfigError ? error.message : String(error)}\n`);
  process.exit(1);
}
const logger = createLogger(config.LOG_LEVEL, 'pgkeep-api', { format: config.LOG_FORMAT });
const services = await createServices(config, logger);
const server = await buildServer(config, services);

// First signal: stop accepting, finish in-flight requests, close connections. A second
// signal, or a close that outlives SHUTDOWN_TIMEOUT_MS, exits at once.
let signals = 0;
const shutdown = (signal: NodeJS.Signals) => {
  signals += 1;
  if (signals > 1) process.exit(1);
  server.log.info({ signal }, 'shutting down');
  setTimeout(() => process.exit(1), config.SHUTDOWN_TIMEOUT_MS).unref();
  server
    .close()
    .then(() => closeServices(services))
    .then(
      () => {
        logger.info('api stopped');
        process.exit(0);
      },
      () => process.exit(1),
    );
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

try {
  await server.listen({ host: config.HOST, port: config.PORT });
} catch (error) {
  logger.fatal({ err: error }, 'api failed to start');
  await closeServices(services);
  process.exit(1);
}
