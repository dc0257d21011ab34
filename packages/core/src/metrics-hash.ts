/**
 * The one Redis hash per deployment, `{<QUEUE_PREFIX>}:pgkeep-metrics`, that every worker on
 * every host adds its counters to (HINCRBY is atomic) and the API reads when Prometheus scrapes
 * it: job outcomes and histograms (@pgkeep/queue job-metrics) and notification deliveries
 * (@pgkeep/notify notification-counter).
 */
export const metricsHashKey = (prefix: string) => `${prefix}:pgkeep-metrics`;
