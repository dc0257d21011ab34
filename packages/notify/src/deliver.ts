import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '@pgkeep/core';
import type { JobNotification } from './notification.js';
import { NotificationError, type Notifier } from './notifier.js';

export interface RetryPolicy {
  /** Attempts after the first. */
  retries: number;
  /** Wait before the first retry; each later wait is four times the one before (1 s, 4 s, 16 s). */
  delayMs: number;
  /** Limit of one attempt. */
  timeoutMs: number;
}

export function retryDelays(policy: Pick<RetryPolicy, 'retries' | 'delayMs'>): number[] {
  return Array.from({ length: policy.retries }, (_, retry) => policy.delayMs * 4 ** retry);
}

export type DeliveryResult =
  | { ok: true; attempts: number }
  | { ok: false; attempts: number; error: NotificationError; abandoned: boolean };

/**
 * Sends one notification through one notifier: each attempt bounded by `timeoutMs`, retried
 * after growing waits while the failure is retryable. `signal` (the worker's shutdown) ends
 * the current attempt or wait at once. Never throws.
 */
export async function deliver(
  notifier: Notifier,
  notification: JobNotification,
  policy: RetryPolicy,
  options: { signal: AbortSignal; logger: Logger },
): Promise<DeliveryResult> {
  const { signal, logger } = options;
  const delays = retryDelays(policy);
  const id = randomUUID();
  const fields = { channel: notifier.channel, target: notifier.target, deliveryId: id };
  let attempt = 0;
  for (;;) {
    attempt += 1;
    let error: NotificationError;
    if (signal.aborted) return abandoned(attempt - 1);
    const timeout = AbortSignal.timeout(policy.timeoutMs);
    try {
      await notifier.send(notification, { id, attempt }, AbortSignal.any([signal, timeout]));
      return { ok: true, attempts: attempt };
    } catch (thrown) {
      if (signal.aborted) return abandoned(attempt);
      if (timeout.aborted) {
        error = new NotificationError(`timed out after ${policy.timeoutMs} ms`, {
          retryable: true,
        });
      } else if (thrown instanceof NotificationError) {
        error = thrown;
      } else {
        // A notifier wraps what it throws; anything else is a bug, and its text is not vetted.
        error = new NotificationError(`unexpected ${(thrown as Error)?.name ?? 'error'}`, {
          retryable: false,
        });
      }
    }
    const wait = delays[attempt - 1];
    if (!error.retryable || wait === undefined) {
      return { ok: false, attempts: attempt, error, abandoned: false };
    }
    logger.warn(
      { ...fields, attempt, retryInMs: wait, error: error.message },
      'notification attempt failed, retrying',
    );
    try {
      await sleep(wait, undefined, { signal });
    } catch {
      return abandoned(attempt);
    }
  }
}

function abandoned(attempts: number): DeliveryResult {
  return {
    ok: false,
    attempts,
    error: new NotificationError('abandoned: the worker is shutting down', { retryable: false }),
    abandoned: true,
  };
}
