import type { NotificationChannel } from './notifier.js';

/**
 * Delivery counts live in one Redis hash per deployment, `{<QUEUE_PREFIX>}:pgkeep-metrics`,
 * shared by every worker, with one field per outcome and channel:
 * `notifications_sent_total:webhook`, `notifications_failed_total:email`, … A notification is
 * counted once, after its last attempt.
 */
export const notificationMetricsKey = (prefix: string) => `${prefix}:pgkeep-metrics`;

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
  const key = notificationMetricsKey(prefix);
  return {
    async count(outcome, channel) {
      await redis.hincrby(key, notificationMetricField(outcome, channel), 1);
    },
  };
}
