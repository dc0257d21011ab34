import {
  type HistogramSnapshot,
  type JobMetricsSnapshot,
  jobOutcomes,
  readHeartbeats,
  readJobMetrics,
  readTargetOutcomes,
} from '@pgkeep/queue';
import { AggregatorRegistry } from 'prom-client';
import type { ApiServices } from './api-services.js';
import { newestCompleted } from './health-detail-service.js';
import { type Check, timed, whenReady } from './health-service.js';
import { pitrOfServers, type ServerPitr } from './pitr-service.js';

/**
 * GET /metrics. Jobs run in worker processes, possibly on other hosts, so nothing the API
 * could count in its own memory would be right: at each scrape it reads the counters the
 * workers keep in Redis, the catalog and the queues, and renders them through a registry built
 * for that scrape (prom-client's AggregatorRegistry.aggregate: metrics made elsewhere, in
 * prom-client's JSON form). A source that cannot be read within its time limit is left out and
 * `pgkeep_metrics_source_up{source}` says so; the other metrics are still served.
 */

type Labels = Record<string, string | number>;
interface Sample {
  value: number;
  labels: Labels;
  metricName?: string;
}
interface MetricJson {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  aggregator: 'sum';
  values: Sample[];
}

const queueStates = ['waiting', 'active', 'delayed', 'prioritized', 'failed', 'completed'] as const;

function metric(
  name: string,
  type: MetricJson['type'],
  help: string,
  values: Sample[],
): MetricJson {
  return { name: `pgkeep_${name}`, help, type, aggregator: 'sum', values };
}

function histogramSamples(name: string, snapshot: HistogramSnapshot, labels: Labels = {}) {
  const full = `pgkeep_${name}`;
  return [
    ...snapshot.buckets.map(({ le, count }) => ({
      value: count,
      labels: { ...labels, le: le === Number.POSITIVE_INFINITY ? '+Inf' : le },
      metricName: `${full}_bucket`,
    })),
    { value: snapshot.sum, labels, metricName: `${full}_sum` },
    { value: snapshot.count, labels, metricName: `${full}_count` },
  ];
}

function jobMetrics(snapshot: JobMetricsSnapshot): MetricJson[] {
  const metrics = [
    metric(
      'jobs_total',
      'counter',
      'Jobs that ended, by job and outcome (a verify that found the backup bad counts as failed; retries are not outcomes).',
      Object.entries(snapshot.jobs).flatMap(([job, outcomes]) =>
        jobOutcomes.map((outcome) => ({ value: outcomes[outcome], labels: { job, outcome } })),
      ),
    ),
    metric(
      'backup_duration_seconds',
      'histogram',
      'Duration of completed backups, from start to manifest.',
      histogramSamples('backup_duration_seconds', snapshot.backupDurationSeconds),
    ),
    metric(
      'backup_size_bytes',
      'histogram',
      'Size of the artifacts of completed backups.',
      histogramSamples('backup_size_bytes', snapshot.backupSizeBytes),
    ),
    metric(
      'lock_wait_seconds',
      'histogram',
      'Time a completed destructive job waited for the cluster-wide lock, by job.',
      Object.entries(snapshot.lockWaitSeconds).flatMap(([job, histogram]) =>
        histogramSamples('lock_wait_seconds', histogram, { job }),
      ),
    ),
  ];
  if (snapshot.notifications.length > 0) {
    metrics.push(
      metric(
        'notifications_total',
        'counter',
        'Notifications sent or failed, by channel.',
        snapshot.notifications.flatMap(({ channel, sent, failed }) => [
          { value: sent, labels: { channel, outcome: 'sent' } },
          { value: failed, labels: { channel, outcome: 'failed' } },
        ]),
      ),
    );
  }
  return metrics;
}

/**
 * Per server with PITR: the recoverable window, its lag and gaps, what the archive holds, and
 * the receiver. A server whose archive cannot be read has `pgkeep_pitr_available` 0 only.
 */
function pitrMetrics(servers: ServerPitr[]): MetricJson[] {
  const families = {
    start: [] as Sample[],
    end: [] as Sample[],
    lag: [] as Sample[],
    gaps: [] as Sample[],
    segments: [] as Sample[],
    baseBackups: [] as Sample[],
    retained: [] as Sample[],
    receiverUp: [] as Sample[],
    available: [] as Sample[],
  };
  const seconds = (iso: string) => Date.parse(iso) / 1000;
  for (const { server, overview } of servers) {
    const labels = { server };
    const available = overview !== undefined && overview.status !== 'unavailable';
    families.available.push({ value: available ? 1 : 0, labels });
    if (!overview) continue;
    if (overview.from) families.start.push({ value: seconds(overview.from), labels });
    if (overview.to) families.end.push({ value: seconds(overview.to), labels });
    if (overview.lagSeconds !== null) families.lag.push({ value: overview.lagSeconds, labels });
    families.gaps.push({ value: overview.gaps.length, labels });
    families.segments.push({ value: overview.segments, labels });
    families.baseBackups.push({ value: overview.baseBackups, labels });
    const retained = overview.receiver?.slot?.retainedBytes;
    if (retained != null) families.retained.push({ value: retained, labels });
    // The status expires unless its leader renews it: one that is there is fresh.
    const streaming = overview.receiver?.state === 'streaming';
    families.receiverUp.push({ value: streaming ? 1 : 0, labels });
  }
  return [
    metric(
      'pitr_window_start_seconds',
      'gauge',
      'The earliest time a point-in-time restore of each server can reach (Unix seconds; absent when there is none).',
      families.start,
    ),
    metric(
      'pitr_window_end_seconds',
      'gauge',
      'The latest time a point-in-time restore of each server can reach (Unix seconds; absent when there is none).',
      families.end,
    ),
    metric(
      'pitr_lag_seconds',
      'gauge',
      'Seconds between now and the end of the recoverable window of each server (absent when there is none).',
      families.lag,
    ),
    metric(
      'pitr_gaps',
      'gauge',
      'Spans of each server that no point-in-time restore reaches: WAL missing from the archive.',
      families.gaps,
    ),
    metric(
      'pitr_archived_segments',
      'gauge',
      'WAL segments in the archive of each server.',
      families.segments,
    ),
    metric('pitr_base_backups', 'gauge', 'Base backups of each server.', families.baseBackups),
    metric(
      'pitr_slot_retained_bytes',
      'gauge',
      'WAL the replication slot of each server holds on the server (absent while no receiver reports it).',
      families.retained,
    ),
    metric(
      'pitr_receiver_up',
      'gauge',
      'Whether a worker streams the WAL of each server now (1) or not (0).',
      families.receiverUp,
    ),
    metric(
      'pitr_available',
      'gauge',
      'Whether point-in-time recovery of each server can work (0: a requirement is missing or its archive cannot be read).',
      families.available,
    ),
  ];
}

/** Runs one source within its time limit; its metrics, or none and a log line. */
async function source(
  services: ApiServices,
  name: string,
  read: () => Promise<MetricJson[]>,
): Promise<{ name: string; metrics: MetricJson[] | undefined }> {
  const answer = await timed(async () => ({ ok: true, metrics: await read() }));
  if ('metrics' in answer) return { name, metrics: answer.metrics as MetricJson[] };
  services.logger.warn({ source: name, err: (answer as Check).error }, 'metrics source failed');
  return { name, metrics: undefined };
}

export async function renderMetrics(
  services: ApiServices,
  now = () => Date.now(),
): Promise<{ contentType: string; body: string }> {
  const { redis, config, storage, queues } = services;
  const prefix = config.REDIS_PREFIX;
  const sources = await Promise.all([
    source(services, 'jobs', async () => {
      await whenReady(redis);
      return jobMetrics(await readJobMetrics(redis, prefix));
    }),
    source(services, 'catalog', async () => {
      const { manifests } = await storage.listManifests();
      const newest = newestCompleted(manifests);
      const completedAt = newest ? Date.parse(newest.completedAt) / 1000 : 0;
      const catalog = [
        metric('backups', 'gauge', 'Backups in the catalog.', [
          { value: manifests.length, labels: {} },
        ]),
        metric('backups_size_bytes', 'gauge', 'Total size of the backups in the catalog.', [
          { value: manifests.reduce((sum, manifest) => sum + manifest.size, 0), labels: {} },
        ]),
        metric(
          'last_successful_backup_timestamp_seconds',
          'gauge',
          'Completion time of the newest backup in the catalog (Unix seconds; 0 when there is none).',
          [{ value: completedAt, labels: {} }],
        ),
      ];
      if (newest) {
        catalog.push(
          metric(
            'newest_backup_age_seconds',
            'gauge',
            'Seconds since the newest backup in the catalog completed (absent when there is none).',
            [{ value: Math.max(0, Math.round(now() - completedAt * 1000) / 1000), labels: {} }],
          ),
        );
      }
      return catalog;
    }),
    // Per target: bounded, since targets come from the targets file and discovery, never from a
    // request. The unlabelled series above stay the panel's target's, as they always were.
    source(services, 'targets', async () => {
      const { targets } = await services.registry.expand();
      const counts: MetricJson['values'] = [];
      const ages: MetricJson['values'] = [];
      const times: MetricJson['values'] = [];
      for (const target of targets) {
        const store = await services.registry.storeFor(target.info);
        const { manifests } = await store.listManifests();
        const labels = { target: target.info.name, server: target.info.server };
        counts.push({ value: manifests.length, labels });
        const newest = newestCompleted(manifests);
        const completedAt = newest ? Date.parse(newest.completedAt) / 1000 : 0;
        times.push({ value: completedAt, labels });
        if (newest) {
          ages.push({ value: Math.max(0, Math.round(now() - completedAt * 1000) / 1000), labels });
        }
      }
      const outcomes = await readTargetOutcomes(redis, prefix);
      return [
        metric(
          'target_jobs_total',
          'counter',
          'Jobs that ended, by target, job and outcome.',
          outcomes.map(({ target, job, outcome, count }) => ({
            value: count,
            labels: { target, job, outcome },
          })),
        ),
        metric('target_backups', 'gauge', 'Backups in the catalog, by target.', counts),
        metric(
          'target_last_successful_backup_timestamp_seconds',
          'gauge',
          'Completion time of the newest backup of each target (Unix seconds; 0 when none).',
          times,
        ),
        metric(
          'target_newest_backup_age_seconds',
          'gauge',
          'Seconds since the newest backup of each target completed (absent when none).',
          ages,
        ),
      ];
    }),
    // Servers with PITR come from the targets file: bounded, as targets are.
    source(services, 'pitr', async () => {
      const servers = services.registry.targets.servers.filter((server) => server.pitr);
      if (servers.length === 0) return [];
      await whenReady(redis);
      const read = await pitrOfServers(services, new Date(now()));
      // Without Redis the receivers are unknown: the source is down, not every server's PITR.
      const unknown = read.find((server) => server.code === 'QUEUE_UNAVAILABLE');
      if (unknown) throw new Error(unknown.error);
      return pitrMetrics(read);
    }),
    source(services, 'queues', async () => {
      await whenReady(redis);
      const counts = await Promise.all(
        Object.entries(queues).map(async ([queue, handle]) => ({
          queue,
          counts: await handle.getJobCounts(...queueStates),
        })),
      );
      return [
        metric(
          'queue_jobs',
          'gauge',
          'Jobs in each queue by state (completed and failed: those still kept in Redis).',
          counts.flatMap(({ queue, counts: byState }) =>
            queueStates.map((state) => ({ value: byState[state] ?? 0, labels: { queue, state } })),
          ),
        ),
      ];
    }),
    source(services, 'workers', async () => {
      await whenReady(redis);
      const beats = await readHeartbeats(redis, prefix);
      return [
        metric('workers_alive', 'gauge', 'Workers whose heartbeat is current.', [
          { value: beats.length, labels: {} },
        ]),
      ];
    }),
  ]);
  const all = sources.flatMap(({ metrics }) => metrics ?? []);
  all.push(
    metric(
      'metrics_source_up',
      'gauge',
      'Whether each source of these metrics could be read at this scrape (1) or not (0).',
      sources.map(({ name, metrics }) => ({ value: metrics ? 1 : 0, labels: { source: name } })),
    ),
  );
  const registry = AggregatorRegistry.aggregate([all]);
  return { contentType: registry.contentType, body: await registry.metrics() };
}
