/**
 * One error type for the whole system. Every failure that reaches a user carries a stable
 * `code`; the HTTP status for a code lives in one table, and `retryable` tells the worker
 * whether BullMQ should try the job again.
 */
export const errorStatus = {
  VALIDATION_ERROR: 400,
  INVALID_BACKUP_ID: 400,
  INVALID_JOB_ID: 400,
  INVALID_TABLE_NAME: 400,
  TABLE_NOT_FOUND: 400,
  CONFIRMATION_REQUIRED: 400,
  INVALID_DATABASE_NAME: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  RESTORE_DISABLED: 403,
  BACKUP_NOT_FOUND: 404,
  JOB_NOT_FOUND: 404,
  // No configured target, nor a database a discovery target picks, has this name.
  TARGET_NOT_FOUND: 404,
  ROUTE_NOT_FOUND: 404,
  // The target's server has no `pitr` in the targets file.
  PITR_NOT_ENABLED: 404,
  CONFLICT: 409,
  JOB_NOT_CANCELLABLE: 409,
  CHECKSUM_MISMATCH: 409,
  PG_RESTORE_TOO_OLD: 409,
  // A verify found the backup bad (details: every check); never retried, the file stays bad.
  VERIFY_FAILED: 409,
  // A restore run again (after its worker stopped) or started too long after its request: it
  // must be asked for again, never retried; the target is untouched.
  RESTORE_INTERRUPTED: 409,
  // A point in time no restore can reach: after now, outside the recoverable window, or in a
  // gap of the archive (details: the window).
  PITR_TIME_IN_FUTURE: 422,
  PITR_TIME_OUTSIDE_WINDOW: 422,
  PITR_TIME_IN_GAP: 422,
  // The recovery of the temporary instance stopped short (WAL missing, a timeline that does not
  // lead there): the server's own reason; nothing was changed.
  PITR_RECOVERY_FAILED: 500,
  // A WAL file of that name is archived already with other bytes: never overwritten.
  PITR_ARCHIVE_CONFLICT: 409,
  RANGE_NOT_SATISFIABLE: 416,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  // Too many failed authentications from one client address (AUTH_FAILURE_LIMIT); the answer
  // carries Retry-After.
  TOO_MANY_AUTH_FAILURES: 429,
  PG_DUMP_FAILED: 500,
  COMPRESSION_FAILED: 500,
  PG_RESTORE_FAILED: 500,
  ROW_COUNT_MISMATCH: 500,
  SWAP_FAILED: 500,
  JOB_CANCELLED: 500,
  STORAGE_ERROR: 500,
  MANIFEST_INVALID: 500,
  // An artifact absent from a destination whose manifest lists it.
  ARTIFACT_MISSING: 500,
  // A required copy could not be written (S3 unreachable, refused, ...).
  COPY_FAILED: 500,
  // Authentication of an encrypted artifact failed: wrong key, tampered, truncated, reordered.
  DECRYPTION_FAILED: 500,
  // The key an artifact was encrypted with is not configured.
  ENCRYPTION_KEY_MISSING: 500,
  // No space (or quota) left where a file was being written, or too little to start. Never
  // retryable: a retry would meet the same full disk; the next scheduled run tries again.
  STORAGE_FULL: 507,
  LOCK_TIMEOUT: 503,
  // A requirement of WAL streaming or base backups is missing on the server (wal_level, the
  // REPLICATION attribute, a pg_hba.conf replication entry, the client tools): the reason says which.
  PITR_UNAVAILABLE: 503,
  PG_BASEBACKUP_FAILED: 500,
  // pg_verifybackup found the base backup bad: it is not kept.
  BASEBACKUP_VERIFY_FAILED: 500,
  JOB_ABORTED: 500,
  INTERNAL_ERROR: 500,
  QUEUE_UNAVAILABLE: 503,
  DATABASE_UNAVAILABLE: 503,
} as const;

export type ErrorCode = keyof typeof errorStatus;

export interface AppErrorOptions {
  retryable?: boolean;
  cause?: unknown;
  details?: Record<string, unknown>;
}

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: AppErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.details = options.details;
  }

  get status(): number {
    return errorStatus[this.code];
  }
}

/**
 * ENOSPC or EDQUOT, from a write of this process (an errno code) or of a child process (its
 * stderr, e.g. zstd's `No space left on device`, carried in the message).
 */
export function isStorageFull(error: unknown): boolean {
  if (error instanceof AppError) return error.code === 'STORAGE_FULL';
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return true;
  const text = error instanceof Error ? error.message : String(error);
  return /no space left on device|disk quota exceeded/i.test(text);
}

/**
 * A write that failed for want of space, as the job error that names where: `destination` is
 * `local (/path/to/BACKUP_DIR)` or a destination's name. Not retryable.
 */
export function storageFullError(destination: string, cause: unknown): AppError {
  if (cause instanceof AppError && cause.code === 'STORAGE_FULL') return cause;
  return new AppError(
    'STORAGE_FULL',
    `no space left in ${destination}: free some space (or add some); the next scheduled run tries again`,
    { retryable: false, cause, details: { destination } },
  );
}

export function toAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  if (isStorageFull(error)) return storageFullError('the backup storage', error);
  const message = error instanceof Error ? error.message : String(error);
  return new AppError('INTERNAL_ERROR', message, { retryable: true, cause: error });
}

/**
 * BullMQ keeps only a failed job's message. A job error is stored as `[CODE] message` so that
 * the API can give the code back to whoever polls the job; an error's details follow on a line
 * of their own after a record separator (U+001E, never part of a message), as JSON.
 */
const encodedError = /^\[([A-Z_]+)\] ([\s\S]*)$/;
const DETAILS_SEPARATOR = '\n\u001e';

export interface JobError {
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

export function encodeJobError(error: AppError): string {
  const text = `[${error.code}] ${error.message.replaceAll('\u001e', ' ')}`;
  return error.details === undefined
    ? text
    : `${text}${DETAILS_SEPARATOR}${JSON.stringify(error.details)}`;
}

function parseDetails(json: string): Record<string, unknown> | undefined {
  try {
    const value = JSON.parse(json) as unknown;
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

export function decodeJobError(failedReason: string): JobError {
  const match = encodedError.exec(failedReason);
  if (!match?.[1] || match[2] === undefined) return { code: 'JOB_FAILED', message: failedReason };
  const [, code, rest] = match;
  const at = rest.lastIndexOf(DETAILS_SEPARATOR);
  const details = at === -1 ? undefined : parseDetails(rest.slice(at + DETAILS_SEPARATOR.length));
  if (!details) return { code, message: rest };
  return { code, message: rest.slice(0, at), details };
}
