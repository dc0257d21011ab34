export * from './compression.js';
export * from './engine-context.js';
export * from './keep-last.js';
export * from './maintenance-jobs.js';
export * from './restore-steps.js';
export * from './run-backup.js';
export * from './run-restore.js';
export * from './run-verify.js';
