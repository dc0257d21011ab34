import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { findJob, openQueues } from '@pgkeep/queue';
import { createSigner, createVerifier } from 'fast-jwt';
import { serializerCompiler } from 'fastify-type-provider-zod';
import { Redis } from 'ioredis';
import { jobViewSchema, okEnvelope } from '../apps/api/src/schemas.js';
import { REDIS_URL, startPgkeep } from './lib/pgkeep.js';

/**
 * Profiling aid for section 5: what one `GET /api/jobs/:id` costs, piece by piece, measured
 * in this process against a real completed backup job of a real pgkeep (worker + API):
 * the token check, the Redis read of findJob (one at a time and 10 at a time, with and without
 * ioredis auto-pipelining), and the zod response serializer against JSON.stringify (which the
 * route now uses). Polls of finished jobs skip findJob (apps/api/src/services/job-poll-service.ts).
 *   npx tsx bench/api-breakdown.ts --db <a database holding a "User" table>
 */
const { values } = parseArgs({
  options: {
    db: { type: 'string', default: 'postgres' },
    seconds: { type: 'string', default: '3' },
  },
});
const seconds = Number(values.seconds);

function perOp(label: string, n: number, work: () => unknown): void {
  for (let i = 0; i < Math.min(n, 1000); i += 1) work();
  const started = performance.now();
  for (let i = 0; i < n; i += 1) work();
  const us = ((performance.now() - started) * 1000) / n;
  process.stdout.write(`${label.padEnd(58)} ${us.toFixed(1).padStart(8)} µs/op\n`);
}

async function throughput(label: string, concurrency: number, work: () => Promise<unknown>) {
  const end = performance.now() + seconds * 1000;
  let done = 0;
  const cpu = process.cpuUsage();
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        await work();
        done += 1;
      }
    }),
  );
  const wall = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  const cpuUs = (used.user + used.system) / done;
  process.stdout.write(
    `${label.padEnd(58)} ${(done / wall).toFixed(0).padStart(8)} ops/s, ${cpuUs.toFixed(0)} µs CPU of this process per op\n`,
  );
}

const workDir = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-breakdown-'));
const stack = await startPgkeep({ database: values.db, workDir });
try {
  const jobId = await stack.enqueue('/api/backup', { tables: ['User'], label: 'breakdown' });
  await stack.waitForJob(jobId);

  process.stdout.write('\n-- token check (HS256, what @fastify/jwt runs per request)\n');
  const secret = 'x'.repeat(48);
  const token = createSigner({ key: secret, algorithm: 'HS256', expiresIn: 3_600_000 })({
    sub: 'bench@pgkeep',
    role: 'SUPER_ADMIN',
  });
  const verify = createVerifier({ key: secret, algorithms: ['HS256'] });
  const cached = createVerifier({ key: secret, algorithms: ['HS256'], cache: true });
  perOp('fast-jwt verify, no cache (as configured)', 20_000, () => verify(token));
  perOp('fast-jwt verify, cache: true', 20_000, () => cached(token));

  process.stdout.write('\n-- findJob (one Lua script: state, job hash, cancel marker)\n');
  for (const autoPipeline of [false, true]) {
    const redis = new Redis(REDIS_URL, {
      maxRetriesPerRequest: 1,
      enableAutoPipelining: autoPipeline,
    });
    redis.on('error', () => {});
    const queues = openQueues(redis, stack.prefix, { onError: () => {} });
    const lookup = { queues, redis, prefix: stack.prefix };
    const tag = autoPipeline ? 'auto-pipelining' : 'plain connection (as now)';
    await throughput(`findJob, 1 at a time, ${tag}`, 1, () => findJob(lookup, jobId));
    await throughput(`findJob, 10 at a time, ${tag}`, 10, () => findJob(lookup, jobId));
    await throughput(`redis GET, 10 at a time, ${tag}`, 10, () => redis.get('nothing'));
    await Promise.all(Object.values(queues).map((queue) => queue.close()));
    redis.disconnect();
  }

  process.stdout.write('\n-- response serialization of the job view\n');
  const { body } = await stack.request<{ data: unknown }>('GET', `/api/jobs/${jobId}`);
  const envelope = { success: true, data: body.data };
  const serialize = serializerCompiler({
    schema: okEnvelope(jobViewSchema),
    method: 'GET',
    url: '/api/jobs/:jobId',
    httpStatus: '200',
  } as never) as (data: unknown) => string;
  process.stdout.write(`(${serialize(envelope).length} bytes)\n`);
  perOp('fastify-type-provider-zod serializer (zod encode + stringify)', 20_000, () =>
    serialize(envelope),
  );
  perOp('JSON.stringify alone', 20_000, () => JSON.stringify(envelope));
} finally {
  await stack.stop();
  await rm(workDir, { recursive: true, force: true });
}
