export * from './backup-id.js';
export * from './config.js';
export * from './errors.js';
export * from './job-catalog.js';
export * from './logger.js';
export * from './manifest.js';
export * from './names.js';
export * from './tables.js';
