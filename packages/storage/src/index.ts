export * from './backup-store.js';
export * from './catalog-keys.js';
export * from './destination.js';
export * from './encryption.js';
export * from './fan-out.js';
export * from './from-config.js';
export * from './local-storage.js';
// Types only: the S3 driver (and the AWS SDK) loads when a destination needs it (from-config).
export type { S3DestinationConfig } from './s3-destination.js';
