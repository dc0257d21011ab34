import os from 'node:os';
import { Redis } from 'ioredis';
import { serverUrl, toolEnv, withClient } from './db.js';
import { REDIS_URL } from './pgkeep.js';
import type { MachineInfo } from './results.js';
import { runTool } from './tools.js';

const firstLine = (text: string) => text.split('\n')[0]?.trim() ?? '';

export async function machineInfo(): Promise<MachineInfo> {
  const env = toolEnv('postgres');
  const postgresServer = await withClient(serverUrl('postgres'), async (client) => {
    const { rows } = await client.query<{ v: string }>(
      "SELECT current_setting('server_version') AS v",
    );
    return rows[0]?.v ?? '?';
  });
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  let redisVersion = '?';
  try {
    await redis.connect();
    const info = await redis.info('server');
    redisVersion = /redis_version:(\S+)/.exec(info)?.[1] ?? '?';
  } finally {
    redis.disconnect();
  }
  return {
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? '?',
    memoryGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    postgresServer,
    pgDump: firstLine(await runTool('pg_dump', ['--version'], env)),
    pgRestore: firstLine(await runTool('pg_restore', ['--version'], env)),
    zstd: firstLine(await runTool('zstd', ['--version'], env)).replace(/^\*+\s*|\s*\*+$/g, ''),
    redis: redisVersion,
  };
}

export const loadAverage = () => os.loadavg().map((value) => Math.round(value * 100) / 100);
