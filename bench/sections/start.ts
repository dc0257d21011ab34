import { spawn } from 'node:child_process';
import { type FSWatcher, statSync, watch } from 'node:fs';
import path from 'node:path';
import { type BenchContext, sectionMeta } from '../lib/context.js';
import { toolEnv } from '../lib/db.js';
import type { JobView } from '../lib/pgkeep.js';
import type { StartSection } from '../lib/results.js';
import { sleep, withTimeout } from '../lib/util.js';

/** Resolves with Date.now() when a `.partial` file in `dir` first holds a byte. */
function firstByteIn(dir: string): { when: Promise<number>; close: () => void } {
  let watcher: FSWatcher | undefined;
  const when = new Promise<number>((resolve) => {
    watcher = watch(dir, (_event, name) => {
      if (!name?.endsWith('.partial')) return;
      try {
        if (statSync(path.join(dir, name)).size > 0) {
          resolve(Date.now());
          watcher?.close();
        }
      } catch {
        // removed meanwhile
      }
    });
  });
  return { when, close: () => watcher?.close() };
}

/** `pg_dump -Fc -Z0` of the bench database started → its first byte on stdout (ms). */
function rawFirstByte(ctx: BenchContext): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn('pg_dump', ['-Fc', '-Z0', '--no-password'], {
      env: toolEnv(ctx.database),
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let firstAt: number | undefined;
    child.stdout.once('data', () => {
      firstAt = performance.now() - t0;
      child.kill('SIGTERM');
    });
    child.on('error', reject);
    child.on('close', () =>
      firstAt === undefined ? reject(new Error('pg_dump wrote nothing')) : resolve(firstAt),
    );
  });
}

/**
 * Section 6. A full backup is requested; the time from the POST to the worker's first byte
 * in the backup's file is taken, then the job is cancelled (the rest of the backup is not
 * what is measured) and the next one goes.
 */
export async function benchStart(ctx: BenchContext, samples: number): Promise<StartSection> {
  const meta = sectionMeta(samples, ctx.code);
  const { stack } = ctx;
  const result: StartSection = {
    ...meta.finish(),
    firstByteMs: [],
    pickedUpMs: [],
    acceptedMs: [],
    pgDumpFirstByteMs: [],
    rawFirstByteMs: [],
  };
  for (let i = 0; i < samples; i += 1) {
    const watcher = firstByteIn(stack.backupDir);
    try {
      const t0 = Date.now();
      const jobId = await stack.enqueue('/api/backup', { label: 'start bench' });
      const accepted = Date.now();
      const firstByte = await withTimeout(watcher.when, 120_000, 'no byte written within 120 s');
      const cancel = await stack.request('POST', `/api/jobs/${jobId}/cancel`);
      let job: JobView | undefined;
      for (;;) {
        const { body } = await stack.request<{ data: JobView }>('GET', `/api/jobs/${jobId}`);
        job = body.data;
        if (job.state === 'completed' || job.state === 'failed') break;
        await sleep(20);
      }
      if (cancel.status !== 202 && job.state !== 'completed') {
        throw new Error(`cancel of ${jobId} answered ${cancel.status}`);
      }
      result.firstByteMs.push(firstByte - t0);
      result.acceptedMs.push(accepted - t0);
      result.pickedUpMs.push(Date.parse(job.startedAt ?? '') - t0);
      const fromPickUp = job.progress?.firstByteMs;
      if (typeof fromPickUp === 'number') result.pgDumpFirstByteMs?.push(fromPickUp);
      result.rawFirstByteMs?.push(await rawFirstByte(ctx));
    } finally {
      watcher.close();
    }
  }
  ctx.log(`  first byte: ${result.firstByteMs.map((ms) => ms.toFixed(0)).join(', ')} ms`);
  return { ...result, ...meta.finish() };
}
