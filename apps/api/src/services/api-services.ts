import type { Config, Logger } from '@pgkeep/core';
import type { ResolvedTarget, TargetRegistry } from '@pgkeep/engine';
import type { PgkeepQueues } from '@pgkeep/queue';
import type { BackupStore } from '@pgkeep/storage';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { PitrArchives } from './pitr-archives.js';

/** What the routes work with; built by the server (or a test) and handed to the app. */
export interface ApiServices {
  config: Config;
  logger: Logger;
  queues: PgkeepQueues;
  redis: Redis;
  /** Reads only: health, and checking table names before a job is queued. */
  db: pg.Pool;
  /** The catalog of the target the panel's routes act on; artifacts are read only for downloads. */
  storage: BackupStore;
  /** Every target of the targets file (or `default` from DATABASE_URL alone). */
  registry: TargetRegistry;
  /** The WAL archive of each server with point-in-time recovery, read for its catalogs. */
  pitrArchives: PitrArchives;
  /** Reads the targets file again; a ConfigError leaves the current one in force. */
  reloadTargets: () => void;
}

/** The services, narrowed to one target: `storage` is that target's catalog. */
export interface TargetServices extends ApiServices {
  target: ResolvedTarget;
}
