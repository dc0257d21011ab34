import { describe, expect, it } from 'vitest';
import {
  AppError,
  decodeJobError,
  type ErrorCode,
  encodeJobError,
  errorStatus,
  isStorageFull,
  storageFullError,
  toAppError,
} from './errors.js';

describe('encodeJobError / decodeJobError', () => {
  it('round-trips the code and message', () => {
    const error = new AppError('BACKUP_NOT_FOUND', 'backup 2026-01-22T16-30-00-000Z not found');
    expect(encodeJobError(error)).toBe(
      '[BACKUP_NOT_FOUND] backup 2026-01-22T16-30-00-000Z not found',
    );
    expect(decodeJobError(encodeJobError(error))).toEqual({
      code: 'BACKUP_NOT_FOUND',
      message: 'backup 2026-01-22T16-30-00-000Z not found',
    });
  });

  it('round-trips a multi-line message (a stderr tail)', () => {
    const message =
      'pg_dump exited with code 1\npg_dump: error: no matching tables were found\n  [detail] x';
    const decoded = decodeJobError(encodeJobError(new AppError('PG_DUMP_FAILED', message)));
    expect(decoded).toEqual({ code: 'PG_DUMP_FAILED', message });
  });

  it('round-trips an empty message', () => {
    expect(decodeJobError(encodeJobError(new AppError('LOCK_TIMEOUT', '')))).toEqual({
      code: 'LOCK_TIMEOUT',
      message: '',
    });
  });

  it("round-trips an error's details, the message without them", () => {
    const checks = [
      { name: 'sha256', ok: true, detail: 'local: 42 bytes, sha256 matches the manifest' },
      { name: 'archive-read', ok: false, detail: 'pg_restore exited with code 1\nstderr' },
    ];
    const error = new AppError('VERIFY_FAILED', 'backup b failed verification: archive-read', {
      details: { backupId: 'b', checks },
    });
    const encoded = encodeJobError(error);
    expect(encoded.startsWith('[VERIFY_FAILED] backup b failed verification: archive-read\n')).toBe(
      true,
    );
    expect(decodeJobError(encoded)).toEqual({
      code: 'VERIFY_FAILED',
      message: 'backup b failed verification: archive-read',
      details: { backupId: 'b', checks },
    });
  });

  it('keeps a message that itself contains the separator or JSON as a message', () => {
    const message = 'line one\n\u001e{"not":"details"}';
    const decoded = decodeJobError(encodeJobError(new AppError('PG_DUMP_FAILED', message)));
    expect(decoded.code).toBe('PG_DUMP_FAILED');
    expect(decoded).not.toHaveProperty('details');
    expect(decoded.message).toBe('line one\n {"not":"details"}');
    expect(decodeJobError('[PG_DUMP_FAILED] text\n\u001enot json')).toEqual({
      code: 'PG_DUMP_FAILED',
      message: 'text\n\u001enot json',
    });
  });

  it.each([
    'connection lost',
    'Error: [x] y',
    '[lowercase] message',
    '[NO_SPACE]message',
    '',
    ' [PG_DUMP_FAILED] leading space',
  ])('decodes an arbitrary failure %j as JOB_FAILED with the text kept', (text) => {
    expect(decodeJobError(text)).toEqual({ code: 'JOB_FAILED', message: text });
  });
});

describe('AppError', () => {
  it('takes its HTTP status from the errorStatus table for every code', () => {
    for (const code of Object.keys(errorStatus) as ErrorCode[]) {
      expect(new AppError(code, 'x').status).toBe(errorStatus[code]);
    }
  });

  it('maps the codes a user meets to the documented statuses', () => {
    expect(new AppError('VALIDATION_ERROR', 'x').status).toBe(400);
    expect(new AppError('INVALID_BACKUP_ID', 'x').status).toBe(400);
    expect(new AppError('UNAUTHORIZED', 'x').status).toBe(401);
    expect(new AppError('FORBIDDEN', 'x').status).toBe(403);
    expect(new AppError('BACKUP_NOT_FOUND', 'x').status).toBe(404);
    expect(new AppError('CONFLICT', 'x').status).toBe(409);
    expect(new AppError('DATABASE_UNAVAILABLE', 'x').status).toBe(503);
    expect(new AppError('INTERNAL_ERROR', 'x').status).toBe(500);
  });

  it('is not retryable unless told, and keeps cause and details', () => {
    const cause = new Error('root');
    const error = new AppError('STORAGE_ERROR', 'disk full', {
      retryable: true,
      cause,
      details: { file: 'a' },
    });
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('AppError');
    expect(error.retryable).toBe(true);
    expect(error.cause).toBe(cause);
    expect(error.details).toEqual({ file: 'a' });
    expect(new AppError('STORAGE_ERROR', 'x').retryable).toBe(false);
  });
});

describe('toAppError', () => {
  it('returns an AppError unchanged', () => {
    const error = new AppError('CONFLICT', 'busy');
    expect(toAppError(error)).toBe(error);
  });

  it('wraps an unknown Error as a retryable INTERNAL_ERROR keeping message and cause', () => {
    const original = new TypeError('boom');
    const wrapped = toAppError(original);
    expect(wrapped).toBeInstanceOf(AppError);
    expect(wrapped.code).toBe('INTERNAL_ERROR');
    expect(wrapped.status).toBe(500);
    expect(wrapped.retryable).toBe(true);
    expect(wrapped.message).toBe('boom');
    expect(wrapped.cause).toBe(original);
  });

  it('wraps thrown non-errors', () => {
    expect(toAppError('plain string')).toMatchObject({
      code: 'INTERNAL_ERROR',
      message: 'plain string',
      retryable: true,
    });
    expect(toAppError(undefined).message).toBe('undefined');
  });
});

describe('a full disk', () => {
  const errno = (code: string, message: string) => Object.assign(new Error(message), { code });

  it.each([
    ['ENOSPC from a write', errno('ENOSPC', 'ENOSPC: no space left on device, write')],
    ['EDQUOT from a write', errno('EDQUOT', 'EDQUOT: disk quota exceeded, write')],
    [
      'a child’s stderr',
      new Error('zstd exited with code 1: Write error : No space left on device'),
    ],
    ['a quota in a child’s stderr', new Error('zstd exited with code 1: Disk quota exceeded')],
  ])('is recognised in %s and becomes a STORAGE_FULL that is never retried', (_name, error) => {
    expect(isStorageFull(error)).toBe(true);
    const wrapped = toAppError(error);
    expect(wrapped).toMatchObject({ code: 'STORAGE_FULL', retryable: false, status: 507 });
    expect(wrapped.cause).toBe(error);
  });

  it('is not seen in other failures', () => {
    expect(isStorageFull(errno('EACCES', 'permission denied'))).toBe(false);
    expect(isStorageFull(new Error('connection reset'))).toBe(false);
    expect(toAppError(errno('EIO', 'i/o error')).code).toBe('INTERNAL_ERROR');
  });

  it('names the destination, and keeps an earlier STORAGE_FULL as it is', () => {
    const error = storageFullError('local (/srv/backups)', errno('ENOSPC', 'no space'));
    expect(error.message).toContain('local (/srv/backups)');
    expect(error.details).toEqual({ destination: 'local (/srv/backups)' });
    expect(storageFullError('elsewhere', error)).toBe(error);
  });
});
