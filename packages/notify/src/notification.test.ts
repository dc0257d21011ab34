import { AppError, encodeJobError } from '@pgkeep/core';
import { describe, expect, it } from 'vitest';
import {
  buildNotification,
  emailSubject,
  emailText,
  escapeSlack,
  type FinishedJob,
  formatBytes,
  type JobNotification,
} from './notification.js';

const requested = { requestedBy: 'admin@example.com', requestedAt: '2026-11-26T12:30:00.000Z' };

const failedBackup: FinishedJob = {
  name: 'backup',
  id: 'backup-14a18557-2d56-4686-81b8-90a76da0081d',
  status: 'failed',
  payload: { tables: ['Gone'], format: 'custom', ...requested },
  failedReason: '[TABLE_NOT_FOUND] table not found: Gone',
  attemptsMade: 1,
  queuedAt: Date.parse('2026-11-26T12:30:00.000Z'),
  startedAt: Date.parse('2026-11-26T12:30:01.000Z'),
  finishedAt: Date.parse('2026-11-26T12:30:02.500Z'),
  database: 'panel',
};

const manifest = {
  id: '2026-11-26T12-30-34-921Z-34dac9ac618b',
  filename: 'backup-2026-11-26T12-30-34-921Z-34dac9ac618b.dump.zst',
  size: 161_160,
  database: 'panel',
};

describe('buildNotification', () => {
  it('describes a failed backup: event, job, error code and message, who and when', () => {
    const notification = buildNotification(failedBackup, 'failure');
    expect(notification).toEqual({
      text:
        ':x: pgkeep backup failed on panel: [TABLE_NOT_FOUND] table not found: Gone ' +
        '(job backup-14a18557-2d56-4686-81b8-90a76da0081d, requested by admin@example.com, attempt 1)',
      event: 'backup.failed',
      outcome: 'failure',
      jobName: 'backup',
      jobId: failedBackup.id,
      scheduled: false,
      attemptsMade: 1,
      backupId: null,
      filename: null,
      database: 'panel',
      error: { code: 'TABLE_NOT_FOUND', message: 'table not found: Gone' },
      requestedBy: 'admin@example.com',
      requestedAt: '2026-11-26T12:30:00.000Z',
      startedAt: '2026-11-26T12:30:01.000Z',
      target: 'default',
      finishedAt: '2026-11-26T12:30:02.500Z',
    });
  });

  it('says JOB_FAILED for an error without a code (a job that stalled too often)', () => {
    const notification = buildNotification(
      { ...failedBackup, failedReason: 'job stalled more than allowable limit' },
      'failure',
    );
    expect(notification?.error).toEqual({
      code: 'JOB_FAILED',
      message: 'job stalled more than allowable limit',
    });
  });

  it('announces a success only under NOTIFY_ON=always, with the file and its size', () => {
    const completed: FinishedJob = {
      ...failedBackup,
      id: 'repeat:schedule-backup:1795696200000',
      status: 'completed',
      failedReason: undefined,
      result: manifest,
      payload: { ...failedBackup.payload, requestedBy: 'scheduler' },
    };
    expect(buildNotification(completed, 'failure')).toBeNull();
    const notification = buildNotification(completed, 'always');
    expect(notification).toMatchObject({
      event: 'backup.succeeded',
      outcome: 'success',
      scheduled: true,
      backupId: manifest.id,
      filename: manifest.filename,
      database: 'panel',
      error: null,
      requestedBy: 'scheduler',
    });
    expect(notification?.text).toBe(
      `:white_check_mark: pgkeep scheduled backup succeeded on panel: ${manifest.filename}, 157.4 KiB ` +
        '(job repeat:schedule-backup:1795696200000, requested by scheduler, attempt 1)',
    );
  });

  it('announces a backup that an optional destination missed, even under NOTIFY_ON=failure', () => {
    const incomplete: FinishedJob = {
      ...failedBackup,
      status: 'completed',
      failedReason: undefined,
      result: {
        ...manifest,
        failedCopies: [
          { destination: 'offsite', code: 'COPY_FAILED', message: 'SlowDown (HTTP 503)' },
        ],
      },
    };
    const notification = buildNotification(incomplete, 'failure');
    expect(notification).toMatchObject({
      event: 'backup.incomplete',
      outcome: 'warning',
      backupId: manifest.id,
      error: { code: 'COPY_FAILED', message: 'no copy in offsite: SlowDown (HTTP 503)' },
    });
    expect(notification?.text).toBe(
      ':warning: pgkeep backup completed without every copy on panel: [COPY_FAILED] no copy in offsite: SlowDown (HTTP 503) ' +
        '(job backup-14a18557-2d56-4686-81b8-90a76da0081d, requested by admin@example.com, attempt 1)',
    );
    expect(emailSubject(notification as NonNullable<typeof notification>)).toBe(
      '[pgkeep] backup incomplete: COPY_FAILED',
    );
    // A backup with every copy stays a plain success.
    expect(
      buildNotification({ ...incomplete, result: { ...manifest, failedCopies: [] } }, 'failure'),
    ).toBeNull();
  });

  it('announces a failed verify as a failure naming the failed checks and the backup it read', () => {
    const checks = [
      { name: 'sha256', ok: false, detail: 'local: sha256 does not match the manifest' },
      { name: 'archive-read', ok: false, detail: 'local: pg_restore exited with code 1' },
    ];
    const message = `backup ${manifest.id} failed verification: sha256: local: sha256 does not match the manifest; archive-read: local: pg_restore exited with code 1`;
    const verify: FinishedJob = {
      name: 'verify',
      id: 'verify-0b5f7a52-5c61-4c0e-9d3c-3b0a6f2d8e11',
      status: 'failed',
      // A scheduled verify asks for the newest backup; its error names the one it read.
      payload: { backupId: 'latest', restore: false, ...requested },
      failedReason: encodeJobError(
        new AppError('VERIFY_FAILED', message, {
          details: { backupId: manifest.id, ok: false, checks, durationMs: 12 },
        }),
      ),
      attemptsMade: 1,
    };
    const notification = buildNotification(verify, 'failure');
    expect(notification).toMatchObject({
      event: 'verify.failed',
      outcome: 'failure',
      backupId: manifest.id,
      error: { code: 'VERIFY_FAILED', message },
    });
    expect(notification?.error).toEqual({ code: 'VERIFY_FAILED', message });
    expect(notification?.text).toContain('sha256: local: sha256 does not match the manifest');
    expect(notification?.text).toContain('archive-read: local: pg_restore exited with code 1');
    expect(emailSubject(notification as JobNotification)).toBe(
      '[pgkeep] verify failed: VERIFY_FAILED',
    );

    const passed: FinishedJob = {
      ...verify,
      status: 'completed',
      payload: { backupId: manifest.id, restore: false, ...requested },
      result: { backupId: manifest.id, ok: true, checks: [], durationMs: 12 },
    };
    delete passed.failedReason;
    expect(buildNotification(passed, 'failure')).toBeNull();
    expect(buildNotification(passed, 'always')?.event).toBe('verify.succeeded');
  });

  it("names a restore's target database and the backup it restored", () => {
    const notification = buildNotification(
      {
        name: 'restore',
        id: 'restore-0b5f7a52-5c61-4c0e-9d3c-3b0a6f2d8e11',
        status: 'failed',
        payload: { backupId: manifest.id, target: 'panel_copy', ...requested },
        failedReason: '[CHECKSUM_MISMATCH] the artifact does not match its manifest',
        attemptsMade: 1,
        database: 'panel',
      },
      'failure',
    );
    expect(notification).toMatchObject({
      event: 'restore.failed',
      backupId: manifest.id,
      database: 'panel_copy',
    });
  });

  it('leaves out jobs that are not announced (delete, clean-up)', () => {
    expect(buildNotification({ ...failedBackup, name: 'cleanup' }, 'always')).toBeNull();
    expect(buildNotification({ ...failedBackup, name: 'delete' }, 'always')).toBeNull();
  });

  it('escapes Slack markup in error messages so that nobody is @-mentioned by a job error', () => {
    const notification = buildNotification(
      { ...failedBackup, failedReason: '[PG_DUMP_FAILED] <!channel> pg_dump: a & b' },
      'failure',
    );
    expect(notification?.text).toContain('&lt;!channel&gt; pg_dump: a &amp; b');
    expect(notification?.error?.message).toBe('<!channel> pg_dump: a & b');
    expect(escapeSlack('<@U123>')).toBe('&lt;@U123&gt;');
  });
});

describe('email', () => {
  it('has a one-line subject naming the error code, and a body with every field', () => {
    const notification = buildNotification(
      { ...failedBackup, failedReason: '[PG_DUMP_FAILED] pg_dump exited 1:\nerror: x\r\nmore' },
      'failure',
    );
    if (!notification) throw new Error('expected a notification');
    expect(emailSubject(notification)).toBe('[pgkeep] backup failed: PG_DUMP_FAILED');
    const text = emailText(notification);
    expect(text.split('\n')[0]).toBe('pgkeep backup failed on panel.');
    expect(text).toContain('Error code:   PG_DUMP_FAILED\n');
    expect(text).toContain('Error:        pg_dump exited 1:\nerror: x');
    expect(text).toContain(`Job:          backup ${failedBackup.id}\n`);
    expect(text).toContain('Requested by: admin@example.com\n');
    expect(text).toContain('Finished at:  2026-11-26T12:30:02.500Z\n');
    expect(text).not.toContain('Backup:');
  });

  it('names the backup in the subject of a success', () => {
    const notification = buildNotification(
      { ...failedBackup, status: 'completed', failedReason: undefined, result: manifest },
      'always',
    );
    if (!notification) throw new Error('expected a notification');
    expect(emailSubject(notification)).toBe(`[pgkeep] backup succeeded: ${manifest.id}`);
  });
});

describe('formatBytes', () => {
  it('uses binary units', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(5 * 1024 ** 3)).toBe('5.0 GiB');
  });
});
