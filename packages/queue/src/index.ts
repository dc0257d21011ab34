export * from './cancellation.js';
export * from './job-metrics.js';
export * from './queues.js';
export * from './redis-connection.js';
export * from './scheduled-failures.js';
export * from './schedules.js';
export * from './verify-outcomes.js';
export * from './worker-registry.js';
