import { metricsHashKey } from '@pgkeep/core';
import type { NotificationChannel } from './notifier.js';

/**
 * Delivery counts live in the deployment's metrics hash (metricsHashKey), shared by every
 * worker, with one field per outcome and channel: `notifications_sent_total:webhook`,
 * `notifications_failed_total:email`, … A notification is counted once, after its last attempt.
 */

export type DeliveryOutcome = 'sent' | 'failed';

export function notificationMetricField(outcome: DeliveryOutcome, channel: NotificationChannel) {
  return `notifications_${outcome}_total:${channel}`;
}

export interface NotificationCounter {
  count(outcome: DeliveryOutcome, channel: NotificationChannel): Promise<void>;
}

/** The part of an ioredis client the counter uses. */
export interface HashIncrementer {
  hincrby(key: string, field: string, increment: number): Promise<unknown>;
}

export function redisNotificationCounter(
  redis: HashIncrementer,
  prefix: string,
): NotificationCounter {
  const key = metricsHashKey(prefix);
  return {
    async count(outcome, channel) {
      await redis.hincrby(key, notificationMetricField(outcome, channel), 1);
    },
  };
}
