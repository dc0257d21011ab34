/**
 * One error type for the whole system. Every failure that reaches a user carries a stable
 * `code`; the HTTP status and the meaning of a code live in one table (docs/reference/errors.md
 * is generated from it), and `retryable` on each error tells the worker whether BullMQ should
 * try the job again.
 */
export interface ErrorCodeInfo {
  /** The HTTP status of an answer with this code. */
  status: number;
  /**
   * Whether a job that fails with it is tried again: `yes` always, `no` never (BullMQ's
   * UnrecoverableError), `transient` only when the cause may pass (a lost connection, say).
   * Documentation of what the code's throw sites decide; each error carries its own flag.
   */
  retried: 'yes' | 'no' | 'transient';
  /** One line for the error reference: when a caller meets it. */
  description: string;
}

// Generic in the status, so each code's status stays a literal type (the OpenAPI responses are
// keyed by it).
const info = <S extends number>(
  status: S,
  retried: ErrorCodeInfo['retried'],
  description: string,
): ErrorCodeInfo & { status: S } => ({ status, retried, description });

export const errorCodes = {
  VALIDATION_ERROR: info(
    400,
    'no',
    'A body, query or URL that does not fit; `details` name the fields.',
  ),
  INVALID_BACKUP_ID: info(
    400,
    'no',
    'A backup id not shaped like `2026-01-22T16-30-00-000Z` (with its random suffix).',
  ),
  INVALID_JOB_ID: info(
    400,
    'no',
    'A job id not shaped like `<job name>-<uuid>` (`backup-…`, `restore-…`, …).',
  ),
  INVALID_TABLE_NAME: info(
    400,
    'no',
    'A table name that is not `Name` or `schema.Name` (also: a partition of a named table).',
  ),
  TABLE_NOT_FOUND: info(
    400,
    'no',
    'A named table does not exist (exact, case-sensitive match); `details.missing` lists them.',
  ),
  CONFIRMATION_REQUIRED: info(
    400,
    'no',
    "A restore whose `confirm` is missing or is not the target database's name.",
  ),
  INVALID_DATABASE_NAME: info(
    400,
    'no',
    'A restore target that is the maintenance database or a template; a database to back up not plainly named.',
  ),
  UNAUTHORIZED: info(
    401,
    'no',
    'No token, an invalid or expired one, one without `exp`, with another issuer or audience, or one that names no user.',
  ),
  FORBIDDEN: info(
    403,
    'no',
    'A valid token without role `SUPER_ADMIN` or permission `backup:manage`.',
  ),
  RESTORE_DISABLED: info(403, 'no', 'A restore while `RESTORE_ENABLED=false`.'),
  BACKUP_NOT_FOUND: info(404, 'no', 'No manifest with that id (under that target).'),
  JOB_NOT_FOUND: info(
    404,
    'no',
    'No such job; finished jobs beyond `JOB_KEEP_COMPLETED` / `JOB_KEEP_FAILED` are removed.',
  ),
  TARGET_NOT_FOUND: info(
    404,
    'no',
    'No configured target, nor a database a discovery target picks, has this name; `/api/backup…` without a `default`.',
  ),
  ROUTE_NOT_FOUND: info(404, 'no', 'No such route.'),
  PITR_NOT_ENABLED: info(404, 'no', "The target's server has no `pitr` in the targets file."),
  CONFLICT: info(409, 'no', 'The request conflicts with the current state.'),
  JOB_NOT_CANCELLABLE: info(409, 'no', 'A cancel of a job that has already completed or failed.'),
  CHECKSUM_MISMATCH: info(
    409,
    'no',
    'The artifact does not match its manifest (missing, truncated, changed): a restore refuses it.',
  ),
  PG_RESTORE_TOO_OLD: info(
    409,
    'no',
    "The worker's pg_restore is older than the pg_dump that made the backup.",
  ),
  VERIFY_FAILED: info(
    409,
    'no',
    'A verify found the backup bad: the message names the failed checks, `details.checks` holds them all.',
  ),
  RESTORE_INTERRUPTED: info(
    409,
    'no',
    'A restore run again (its worker stopped), or started, after `RESTORE_RETRY_WINDOW_MS`; the target is untouched: ask again.',
  ),
  PITR_TIME_IN_FUTURE: info(422, 'no', 'A point-in-time restore to a time after now.'),
  PITR_TIME_OUTSIDE_WINDOW: info(
    422,
    'no',
    "A time before the oldest usable base backup's end or after the archive's end; `details.window`.",
  ),
  PITR_TIME_IN_GAP: info(
    422,
    'no',
    'A time where WAL is missing from the archive; `details.window.gaps`.',
  ),
  PITR_RECOVERY_FAILED: info(
    500,
    'no',
    "The temporary instance stopped before reaching the time (WAL missing, a timeline that does not lead there): the server's reason; nothing was changed.",
  ),
  PITR_ARCHIVE_CONFLICT: info(
    409,
    'no',
    'A WAL file of that name is archived already with other bytes, or the server is another cluster: never overwritten.',
  ),
  RANGE_NOT_SATISFIABLE: info(416, 'no', 'A download `Range` outside the artifact.'),
  PAYLOAD_TOO_LARGE: info(413, 'no', 'A body over 1 MiB.'),
  UNSUPPORTED_MEDIA_TYPE: info(415, 'no', 'A body that is not JSON.'),
  TOO_MANY_AUTH_FAILURES: info(
    429,
    'no',
    "Too many failed authentications from the client's address (`AUTH_FAILURE_LIMIT`); `Retry-After` says when to come back.",
  ),
  PG_DUMP_FAILED: info(
    500,
    'transient',
    'pg_dump failed (the job error carries its exit code and the tail of its stderr), or it is older than the server; retried when the connection was lost.',
  ),
  COMPRESSION_FAILED: info(500, 'no', 'zstd or gzip failed.'),
  PG_RESTORE_FAILED: info(
    500,
    'no',
    'pg_restore or psql failed (exit code and stderr tail in the job error); the target is unchanged.',
  ),
  ROW_COUNT_MISMATCH: info(
    500,
    'no',
    "Restored tables do not have the manifest's row counts; the target is unchanged.",
  ),
  SWAP_FAILED: info(
    500,
    'transient',
    'The swap transaction failed (sessions kept reconnecting, a lock not granted); the target is unchanged.',
  ),
  JOB_CANCELLED: info(500, 'no', 'Cancelled through `POST /api/jobs/:jobId/cancel`.'),
  STORAGE_ERROR: info(
    500,
    'transient',
    'The backup directory or a bucket could not be read or written.',
  ),
  MANIFEST_INVALID: info(
    500,
    'no',
    "The backup's manifest fails validation, or its HMAC check when a catalog key is set (the list skips it).",
  ),
  ARTIFACT_MISSING: info(
    500,
    'no',
    "No configured destination holds a readable copy of the backup's artifact.",
  ),
  COPY_FAILED: info(
    500,
    'transient',
    'A required copy (an S3 destination) could not be written after its retries; nothing of the backup is kept.',
  ),
  DECRYPTION_FAILED: info(
    500,
    'no',
    'An encrypted artifact failed authentication: wrong key, or the file was changed, truncated or reordered.',
  ),
  ENCRYPTION_KEY_MISSING: info(
    500,
    'no',
    "The backup's key id is not among the configured keys (`BACKUP_ENCRYPTION_KEY`, `…_OLD_KEYS`, the passphrases).",
  ),
  STORAGE_FULL: info(
    507,
    'no',
    'No space (or quota) left in the destination it names, or too little to start a job; the next scheduled run tries again.',
  ),
  LOCK_TIMEOUT: info(
    503,
    'yes',
    "A job waited `LOCK_TIMEOUT_MS` for a lock or a server slot, or lost a held lock's connection.",
  ),
  PITR_UNAVAILABLE: info(
    503,
    'no',
    'A requirement of WAL streaming, base backups or a PITR restore is missing (wal_level, REPLICATION, a pg_hba.conf entry, the tools); the message says which.',
  ),
  PG_BASEBACKUP_FAILED: info(
    500,
    'transient',
    'pg_basebackup failed (exit code and stderr tail in the job error).',
  ),
  BASEBACKUP_VERIFY_FAILED: info(
    500,
    'no',
    'pg_verifybackup found the base backup bad: it is not kept.',
  ),
  JOB_ABORTED: info(
    500,
    'yes',
    "A job interrupted by its worker's shutdown, also while it waited for a lock or a slot.",
  ),
  INTERNAL_ERROR: info(
    500,
    'transient',
    'Anything else; the answer says `internal error`, the details go to the log.',
  ),
  QUEUE_UNAVAILABLE: info(503, 'transient', 'Redis is not reachable.'),
  DATABASE_UNAVAILABLE: info(
    503,
    'transient',
    'The database (or the lock server) is not reachable.',
  ),
} as const satisfies Record<string, ErrorCodeInfo>;

export type ErrorCode = keyof typeof errorCodes;

/** The HTTP status of every code, from the one table above. */
export const errorStatus = Object.fromEntries(
  Object.entries(errorCodes).map(([code, entry]) => [code, entry.status]),
) as { readonly [Code in ErrorCode]: (typeof errorCodes)[Code]['status'] };

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
