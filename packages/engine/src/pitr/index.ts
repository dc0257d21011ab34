export * from './overview.js';
export * from './pitr-cleanup.js';
export * from './recoverable-window.js';
export * from './requirements.js';
export * from './run-basebackup.js';
export * from './wal-archive.js';
export * from './wal-position.js';
export * from './wal-receiver.js';
