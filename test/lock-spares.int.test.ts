import { randomBytes } from 'node:crypto';
import { createLogger } from '@pgkeep/core';
import { AdvisoryLocks, parseDatabaseUrl } from '@pgkeep/pg';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { withClient } from './support/test-env.js';

/**
 * A worker keeps lock sessions connected ahead of need. A lock taken on one is the same lock:
 * exclusive against every other session, released with its session; a spare that died while
 * idle is replaced, not handed out; closing ends the spares.
 */
const serverUrl = inject('databaseUrl');
const namespace = `spares_${randomBytes(4).toString('hex')}`;
const logger = createLogger('silent', 'test');
const withSpares = new AdvisoryLocks(parseDatabaseUrl(serverUrl), namespace, logger, { spares: 2 });
const plain = new AdvisoryLocks(parseDatabaseUrl(serverUrl), namespace, logger);

afterAll(async () => {
  await withSpares.close();
});

async function spareSessions(): Promise<number[]> {
  return withClient(serverUrl, async (client) => {
    const { rows } = await client.query<{ pid: number }>(
      'SELECT pid FROM pg_stat_activity WHERE application_name = $1',
      [`pgkeep-lock-spare:${namespace}`],
    );
    return rows.map((row) => row.pid);
  });
}

async function until<T>(what: string, probe: () => Promise<T>, ok: (value: T) => boolean) {
  for (let i = 0; i < 200; i++) {
    const value = await probe();
    if (ok(value)) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('spare lock sessions', () => {
  it('are connected after the first lock, and a lock on one excludes every other session', async () => {
    const first = await withSpares.acquire('alpha', 'exclusive', { timeoutMs: 5000 });
    await first.release();
    await until('two spares', spareSessions, (pids) => pids.length === 2);
    const held = await withSpares.acquire('alpha', 'exclusive', { timeoutMs: 5000 });
    expect(await plain.tryAcquire('alpha', 'exclusive')).toBeUndefined();
    expect(await plain.tryAcquire('alpha', 'shared')).toBeUndefined();
    await held.release();
    const again = await plain.tryAcquire('alpha', 'exclusive');
    expect(again).toBeDefined();
    await again?.release();
  });

  it('that died while idle are not handed out: the lock is taken on a new session', async () => {
    const pids = await until('two spares', spareSessions, (found) => found.length === 2);
    await withClient(serverUrl, (client) =>
      client.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [pids]),
    );
    const held = await withSpares.acquire('beta', 'exclusive', { timeoutMs: 5000 });
    expect(await plain.tryAcquire('beta', 'exclusive')).toBeUndefined();
    expect(held.lost.aborted).toBe(false);
    await held.release();
    const refilled = await until('the spares back', spareSessions, (found) => found.length === 2);
    expect(refilled.some((pid) => pids.includes(pid))).toBe(false);
  });

  it('end when the locks are closed', async () => {
    await until('two spares', spareSessions, (found) => found.length === 2);
    await withSpares.close();
    await until('no spare left', spareSessions, (found) => found.length === 0);
  });
});
