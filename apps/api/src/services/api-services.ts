import type { Config, Logger } from '@pgkeep/core';
import type { PgkeepQueues } from '@pgkeep/queue';
import type { BackupStore } from '@pgkeep/storage';
import type { Redis } from 'ioredis';
import type pg from 'pg';

/** What the routes work with; built by the server (or a test) and handed to the app. */
export interface ApiServices {
  config: Config;
  logger: Logger;
  queues: PgkeepQueues;
  redis: Redis;
  /** Reads only: health, and checking table names before a job is queued. */
  db: pg.Pool;
  /** The catalog; artifacts are read only for downloads. */
  storage: BackupStore;
}
