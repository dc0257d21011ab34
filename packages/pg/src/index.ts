export * from './advisory-locks.js';
export * from './catalog-queries.js';
export * from './child-process.js';
export * from './connection.js';
export * from './database-admin.js';
export * from './pg-dump.js';
export * from './pg-restore.js';
export * from './pg-tools.js';
