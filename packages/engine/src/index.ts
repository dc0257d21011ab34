export * from './compression.js';
export * from './engine-context.js';
export * from './keep-last.js';
export * from './maintenance-jobs.js';
export * from './run-backup.js';
