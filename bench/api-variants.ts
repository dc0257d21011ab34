import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { freePort, ROOT, startNodeApp, startPgkeep, stopChild } from './lib/pgkeep.js';
import { median, sleep } from './lib/util.js';

/**
 * Profiling aid for section 5: the effect of each proposed change to `GET /api/jobs/:id`,
 * measured over HTTP in one run (alternating, medians): pgkeep's API as it is, the prototype
 * route of bench/experiments/job-route-server.ts without and with the changes, and a bare
 * Fastify route.
 *   npx tsx bench/api-variants.ts --db <a database holding a "User" table> [--runs 3]
 */
const { values } = parseArgs({
  options: {
    db: { type: 'string', default: 'postgres' },
    runs: { type: 'string', default: '3' },
    duration: { type: 'string', default: '5' },
    connections: { type: 'string', default: '10' },
  },
});

const workDir = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-variants-'));
const stack = await startPgkeep({ database: values.db, workDir });
const children: ReturnType<typeof startNodeApp>[] = [];
try {
  const jobId = await stack.enqueue('/api/backup', { tables: ['User'], label: 'variants' });
  await stack.waitForJob(jobId);
  const auth = { authorization: `Bearer ${stack.token}` };
  const targets: { label: string; url: string; headers: Record<string, string> }[] = [
    { label: 'pgkeep API as it is', url: `${stack.baseUrl}/api/jobs/${jobId}`, headers: auth },
  ];
  const variants = [
    ['prototype: the job route alone, no logger', ''],
    ["prototype + pgkeep's logger (LOG_LEVEL=warn)", 'logger'],
    ['prototype + pipelined + JWT cache + JSON', 'pipelined,jwt-cache,json'],
    ['prototype + logger + pipelined + JWT cache + JSON', 'logger,pipelined,jwt-cache,json'],
  ] as const;
  const env = (port: number, variant: string) => ({
    DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${values.db}`,
    REDIS_URL: process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379',
    QUEUE_PREFIX: stack.prefix,
    JWT_SECRET: stack.secret,
    PORT: String(port),
    LOG_LEVEL: 'warn',
    NODE_ENV: 'production',
    VARIANT: variant,
  });
  for (const [label, variant] of variants) {
    const port = await freePort();
    children.push(
      startNodeApp(
        path.join(ROOT, 'bench/experiments/job-route-server.ts'),
        env(port, variant),
        path.join(workDir, `variant-${children.length}.log`),
      ),
    );
    targets.push({ label, url: `http://127.0.0.1:${port}/api/jobs/${jobId}`, headers: auth });
  }
  const barePort = await freePort();
  children.push(
    startNodeApp(
      path.join(ROOT, 'bench/bare-server.ts'),
      { PORT: String(barePort) },
      path.join(workDir, 'bare.log'),
    ),
  );
  targets.push({
    label: 'bare Fastify route',
    url: `http://127.0.0.1:${barePort}/bare`,
    headers: {},
  });
  for (const target of targets) {
    for (let i = 0; ; i += 1) {
      const response = await fetch(target.url, { headers: target.headers }).catch(() => null);
      if (response?.ok) break;
      if (i > 300) throw new Error(`${target.label} did not answer 200; see ${workDir}`);
      await sleep(100);
    }
  }
  const connections = Number(values.connections);
  const duration = Number(values.duration);
  const results = targets.map(() => ({ rps: [] as number[], p99: [] as number[] }));
  for (const target of targets) {
    await autocannon({ url: target.url, headers: target.headers, connections, duration: 1 });
  }
  for (let round = 1; round <= Number(values.runs); round += 1) {
    for (const [index, target] of targets.entries()) {
      const r = await autocannon({
        url: target.url,
        headers: target.headers,
        connections,
        duration,
      });
      results[index]?.rps.push(r['2xx'] / r.duration);
      results[index]?.p99.push(r.latency.p99);
      process.stdout.write(
        `round ${round} ${target.label}: ${(r['2xx'] / r.duration).toFixed(0)} req/s, p99 ${r.latency.p99} ms${r.non2xx ? `, ${r.non2xx} non-2xx` : ''}\n`,
      );
    }
  }
  process.stdout.write(`\nmedians (${connections} connections, ${duration} s runs):\n`);
  const base = median(results[0]?.rps ?? []);
  for (const [index, target] of targets.entries()) {
    const rps = median(results[index]?.rps ?? []);
    process.stdout.write(
      `  ${target.label.padEnd(52)} ${rps.toFixed(0).padStart(6)} req/s (${(rps / base).toFixed(2)}× pgkeep), p99 ${median(results[index]?.p99 ?? []).toFixed(1)} ms\n`,
    );
  }
} finally {
  await Promise.all(children.map((child) => stopChild(child)));
  await stack.stop();
  await rm(workDir, { recursive: true, force: true });
}
