import { createHash } from 'node:crypto';
import type { Retention } from './job-catalog.js';
import type { ScheduleSpec } from './targets.js';

/**
 * Point-in-time recovery of a server: a WAL archive fed by one `pg_receivewal` per server
 * (through a physical replication slot) and base backups taken by `pg_basebackup`, both copied
 * to the server's destinations under `pitr/<server>/`.
 */
export interface PitrSettings {
  /** The physical replication slot the receiver streams through (`pgkeep_<server>`). */
  slot: string;
  destinations: string[];
  encryption: boolean;
  baseBackup: {
    schedule: ScheduleSpec;
    /** `spread` (gentle on the server, may take minutes) or `fast` (an immediate checkpoint). */
    checkpoint: 'fast' | 'spread';
  };
  /** Keeps base backups by this policy, and the WAL the oldest kept one needs. */
  retention: Retention;
  cleanup: { schedule: ScheduleSpec };
  timeZone: string;
  /** Health turns warning when the archive's end is older than this. */
  lagWarningSeconds: number;
  /** Health turns warning when the slot holds more WAL on the server than this. */
  retainedWarningBytes: number;
  /**
   * How often the receiver asks the server to switch to a new segment when WAL was written since
   * the last switch (as `archive_timeout` does), so a quiet server's recent changes reach the
   * archive within this many seconds. 0: never (segments complete only when full).
   */
  switchWalSeconds: number;
}

export const pitrDefaults = {
  baseBackupSchedule: '0 1 * * 0',
  cleanupSchedule: '30 3 * * 0',
  checkpoint: 'spread',
  retention: { kind: 'keep-last', keepLast: 2 } as Retention,
  lagWarningSeconds: 600,
  retainedWarningBytes: 8 * 1024 * 1024 * 1024,
  switchWalSeconds: 60,
} as const;

/**
 * `pgkeep_<server>`: slot names allow lowercase letters, digits and `_` only, up to 63 bytes. A
 * long server name is cut and a digest of the whole name keeps it unique.
 */
export function slotNameFor(server: string): string {
  const name = `pgkeep_${server.replace(/-/g, '_')}`;
  if (name.length <= 63) return name;
  const digest = createHash('sha256').update(server).digest('hex').slice(0, 8);
  return `${name.slice(0, 54)}_${digest}`;
}

/** Where a server's WAL archive and base backups live inside every destination. */
export function pitrStoragePrefix(server: string): string {
  return `pitr/${server}/`;
}
