import { type Config, createLogger, loadConfig } from '@pgkeep/core';
import { createSigner } from 'fast-jwt';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { expect, vi } from 'vitest';
import { buildServer, closeServices, createServices } from '../../apps/api/src/server.js';
import type { ApiServices } from '../../apps/api/src/services/api-services.js';
import { JWT_SECRET } from './test-env.js';

export interface TestApi {
  app: FastifyInstance;
  services: ApiServices;
  config: Config;
  close(): Promise<void>;
}

/** The real API in-process (same plugins, real Redis and PostgreSQL), driven by inject(). */
export async function startApi(env: Record<string, string>): Promise<TestApi> {
  const config = loadConfig({ ...env, LOG_LEVEL: 'silent' });
  const services = await createServices(config, createLogger('silent', 'pgkeep-api-test'), env);
  const app = await buildServer(config, services);
  await app.ready();
  return {
    app,
    services,
    config,
    async close() {
      await app.close();
      await closeServices(services);
    },
  };
}

/** A signed token that expires (in an hour unless `expiresIn`, in ms, says otherwise). */
/**
 * The API fails fast (503 QUEUE_UNAVAILABLE) while its Redis connection and queues are not up
 * yet, and `app.ready()` does not wait for them: this waits, so the first request is served.
 */
export async function startConnectedApi(variables: Record<string, string>): Promise<TestApi> {
  const started = await startApi(variables);
  await vi.waitFor(() => expect(started.services.redis.status).toBe('ready'), {
    timeout: 10_000,
    interval: 20,
  });
  await Promise.all(Object.values(started.services.queues).map((queue) => queue.waitUntilReady()));
  return started;
}

export function token(
  claims: Record<string, unknown> = { sub: 'admin@example.com', role: 'SUPER_ADMIN' },
  secret = JWT_SECRET,
  options: { expiresIn?: number } = {},
) {
  return createSigner({
    key: secret,
    algorithm: 'HS256',
    expiresIn: options.expiresIn ?? 3_600_000,
  })(claims);
}

export const adminHeaders = () => ({ authorization: `Bearer ${token()}` });

export function json<
  T = { success: boolean; data: never; count?: number; error: { code: string; message: string } },
>(response: LightMyRequestResponse): T {
  return response.json() as T;
}

export async function postJob(api: TestApi, url: string, body?: unknown): Promise<string> {
  const response = await api.app.inject({
    method: url.startsWith('DELETE ') ? 'DELETE' : 'POST',
    url: url.replace(/^DELETE /, ''),
    headers: adminHeaders(),
    ...(body === undefined ? {} : { payload: body as object }),
  });
  expect(response.statusCode, response.body).toBe(202);
  return (response.json() as { data: { jobId: string } }).data.jobId;
}

export interface PolledJob {
  jobId: string;
  state: 'queued' | 'running' | 'completed' | 'failed';
  progress: { phase?: string; percent?: number | null; bytesWritten?: number } | null;
  result: Record<string, unknown> | null;
  error: { code: string; message: string; details?: Record<string, unknown> } | null;
  lastError: { code: string; message: string; details?: Record<string, unknown> } | null;
  attemptsMade: number;
  requestedBy: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

export async function getJob(api: TestApi, jobId: string): Promise<PolledJob> {
  const response = await api.app.inject({
    method: 'GET',
    url: `/api/jobs/${jobId}`,
    headers: adminHeaders(),
  });
  expect(response.statusCode, response.body).toBe(200);
  return (response.json() as { data: PolledJob }).data;
}

/** Polls the job through the API, as the panel does, until `until` holds (bounded). */
export async function waitForJob(
  api: TestApi,
  jobId: string,
  until: (job: PolledJob) => boolean = (job) => job.state === 'completed' || job.state === 'failed',
  timeoutMs = 60_000,
): Promise<PolledJob> {
  return vi.waitFor(
    async () => {
      const job = await getJob(api, jobId);
      if (!until(job))
        throw new Error(`job ${jobId} is ${job.state} (${JSON.stringify(job.progress)})`);
      return job;
    },
    { timeout: timeoutMs, interval: 50 },
  );
}

export interface VerifyVerdict {
  backupId: string;
  ok: boolean;
  checks: { name: string; ok: boolean; detail: string }[];
}

/**
 * What a finished verify found: a completed job passed every check; a backup found bad is a
 * failed job, VERIFY_FAILED, not retried, its checks in `error.details`.
 */
export function verifyVerdict(job: PolledJob): VerifyVerdict {
  if (job.state === 'completed') {
    expect(job.error).toBeNull();
    const result = job.result as unknown as VerifyVerdict;
    expect(result.ok).toBe(true);
    return result;
  }
  expect(job.state).toBe('failed');
  expect(job.error?.code, JSON.stringify(job.error)).toBe('VERIFY_FAILED');
  expect(job.attemptsMade).toBe(1);
  const details = job.error?.details as unknown as VerifyVerdict;
  expect(details.ok).toBe(false);
  const failed = details.checks.filter((check) => !check.ok).map((check) => check.name);
  expect(failed.length).toBeGreaterThan(0);
  // The message names every failed check.
  for (const name of failed) expect(job.error?.message).toContain(`${name}: `);
  return details;
}
