import { randomBytes } from 'node:crypto';

/**
 * Backup ids keep the panel's shape, `2026-01-22T16-30-00-000Z`, with a random suffix so that
 * two backups started in the same millisecond (on any host) still get different ids: 48 random
 * bits, and the artifact is created with O_EXCL, so even a collision never overwrites. Ids come
 * back from users in URLs, so nothing builds a path from one before `isBackupId` accepts it.
 */
const backupIdPattern = /^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z(?:-[0-9a-f]{12})?$/;

export const backupIdRegex = backupIdPattern;

export function isBackupId(value: string): boolean {
  return value.length <= 40 && backupIdPattern.test(value);
}

export function newBackupId(now: Date = new Date()): string {
  const stamp = now.toISOString().replace(/[:.]/g, '-');
  return `${stamp}-${randomBytes(6).toString('hex')}`;
}
