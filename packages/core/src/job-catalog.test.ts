import { describe, expect, it } from 'vitest';
import {
  isJobName,
  type JobName,
  jobCatalog,
  jobNameOfId,
  jobNames,
  jobProgressSchema,
  newJobId,
  queueNames,
} from './job-catalog.js';

const requester = { requestedBy: 'admin-1', requestedAt: '2026-01-22T16:30:00.000Z' };

const validPayloads: { [N in JobName]: Record<string, unknown> } = {
  backup: {
    tables: ['User', 'public.WhatsappMessage'],
    format: 'custom',
    compression: 'zstd',
    label: 'nightly',
    type: 'manual',
    ...requester,
  },
  verify: { backupId: '2026-01-22T16-30-00-000Z-a1b2c3a1b2c3', restore: true, ...requester },
  restore: { backupId: '2026-01-22T16-30-00-000Z-a1b2c3a1b2c3', target: 'panel', ...requester },
  delete: { backupId: '2026-01-22T16-30-00-000Z-a1b2c3a1b2c3', ...requester },
  cleanup: {
    retention: { kind: 'keep-last', keepLast: 7 },
    timeZone: 'UTC',
    dryRun: false,
    preRestoreMaxAgeDays: 7,
    ...requester,
  },
  discover: {
    job: 'backup',
    template: {
      tables: null,
      format: 'custom',
      compression: 'zstd',
      label: null,
      type: 'scheduled',
    },
    targetName: 'everything',
    ...requester,
  },
  'pitr-restore': {
    pointInTime: '2026-12-02T16:39:59+01:00',
    target: 'orders',
    targetName: 'orders',
    ...requester,
  },
  basebackup: { server: 'main', checkpoint: 'fast', type: 'manual', ...requester },
  'pitr-cleanup': {
    server: 'main',
    retention: { kind: 'keep-last', keepLast: 2 },
    timeZone: 'UTC',
    dryRun: true,
    ...requester,
  },
};

describe('job ids', () => {
  it('round-trips every job name', () => {
    expect(jobNames.length).toBeGreaterThan(0);
    for (const name of jobNames) {
      const id = newJobId(name);
      expect(id.startsWith(`${name}-`)).toBe(true);
      expect(jobNameOfId(id)).toBe(name);
    }
  });

  it('gives different ids each time', () => {
    expect(newJobId('backup')).not.toBe(newJobId('backup'));
  });

  it.each([
    '',
    'backup',
    'backup-',
    'backup-123',
    'rewind-00000000-0000-4000-8000-000000000000',
    'unknown-00000000-0000-4000-8000-000000000000',
    'BACKUP-00000000-0000-4000-8000-000000000000',
    'backup-00000000-0000-4000-8000-00000000000G',
    'backup-00000000-0000-4000-8000-000000000000-extra',
    ' backup-00000000-0000-4000-8000-000000000000',
    'backup-00000000-0000-4000-8000-000000000000\n',
    '../backup-00000000-0000-4000-8000-000000000000',
    'toString-00000000-0000-4000-8000-000000000000',
    '42',
  ])('rejects the id %j', (id) => {
    expect(jobNameOfId(id)).toBeUndefined();
  });

  it('knows its own job names only', () => {
    expect(isJobName('backup')).toBe(true);
    expect(isJobName('toString')).toBe(false);
    expect(isJobName('constructor')).toBe(false);
  });
});

describe('job catalog', () => {
  it('puts destructive jobs on the maintenance queue and the rest on backups', () => {
    for (const name of jobNames) {
      const entry = jobCatalog[name];
      expect(entry.queue).toBe(entry.destructive ? queueNames.maintenance : queueNames.backups);
    }
    expect(jobCatalog.backup.destructive).toBe(false);
    expect(jobCatalog.delete.destructive).toBe(true);
    expect(jobCatalog.cleanup.destructive).toBe(true);
  });

  it('accepts a valid payload for every job', () => {
    for (const name of jobNames) {
      expect(jobCatalog[name].payload.safeParse(validPayloads[name]).success).toBe(true);
    }
  });

  it('rejects every payload that does not say who asked for it', () => {
    for (const name of jobNames) {
      const { requestedBy: _omitted, ...rest } = validPayloads[name];
      expect(jobCatalog[name].payload.safeParse(rest).success).toBe(false);
      const empty = { ...validPayloads[name], requestedBy: '' };
      expect(jobCatalog[name].payload.safeParse(empty).success).toBe(false);
      const { requestedAt: _at, ...noTime } = validPayloads[name];
      expect(jobCatalog[name].payload.safeParse(noTime).success).toBe(false);
    }
  });

  it('rejects a delete of a path instead of a backup id', () => {
    const payload = { ...validPayloads.delete, backupId: '../../etc/passwd' };
    expect(jobCatalog.delete.payload.safeParse(payload).success).toBe(false);
  });

  it('rejects a backup of unsafe table names and labels with control characters', () => {
    const badTables = { ...validPayloads.backup, tables: ['User; DROP TABLE x'] };
    expect(jobCatalog.backup.payload.safeParse(badTables).success).toBe(false);
    const badLabel = { ...validPayloads.backup, label: 'a\nb' };
    expect(jobCatalog.backup.payload.safeParse(badLabel).success).toBe(false);
    const full = { ...validPayloads.backup, tables: null, label: null };
    expect(jobCatalog.backup.payload.safeParse(full).success).toBe(true);
  });

  it('rejects a cleanup that would keep fewer than one backup', () => {
    for (const keepLast of [0, -1, 1.5, 10_001]) {
      const payload = { ...validPayloads.cleanup, retention: { kind: 'keep-last', keepLast } };
      expect(jobCatalog.cleanup.payload.safeParse(payload).success).toBe(false);
    }
  });

  it('bounds progress percent to 0..100', () => {
    expect(jobProgressSchema.safeParse({ phase: 'dumping', percent: 50 }).success).toBe(true);
    expect(jobProgressSchema.safeParse({ phase: 'dumping', percent: null }).success).toBe(true);
    expect(jobProgressSchema.safeParse({ phase: 'dumping', percent: 101 }).success).toBe(false);
  });
});
