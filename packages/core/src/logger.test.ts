import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { type LogFormat, loggerOptions } from './logger.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SECRET = 's3cr3t-value-that-must-not-show';

/**
 * What a process using createLogger really writes: pretty lines come from pino's transport
 * thread, which only a separate process's stdout and stderr show whole.
 */
async function logLines(
  format: LogFormat,
  to: 'stdout' | 'stderr' = 'stdout',
): Promise<{ stdout: string; stderr: string }> {
  const script = `
    import { createLogger } from ${JSON.stringify(path.join(here, 'logger.ts'))};
    const logger = createLogger('info', 'logger-test', { format: ${JSON.stringify(format)}, to: ${JSON.stringify(to)} });
    logger.info(
      { password: ${JSON.stringify(SECRET)}, job: { token: ${JSON.stringify(SECRET)} }, JWT_SECRET: ${JSON.stringify(SECRET)}, backupId: 'b-1' },
      'hello from the logger',
    );
    logger.debug('below the level');
  `;
  return promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', '--input-type=module', '--eval', script],
    { cwd: here, encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } },
  );
}

describe('loggerOptions', () => {
  it('writes JSON unless pretty is asked for', () => {
    expect(loggerOptions('info', 'x').transport).toBeUndefined();
    expect(loggerOptions('info', 'x', { format: 'json' }).transport).toBeUndefined();
    expect(loggerOptions('info', 'x', { format: 'pretty' }).transport).toMatchObject({
      target: 'pino-pretty',
      options: { destination: 1 },
    });
    expect(loggerOptions('info', 'x', { format: 'pretty', to: 'stderr' }).transport).toMatchObject({
      options: { destination: 2 },
    });
  });
});

describe('createLogger output', () => {
  type Output = Awaited<ReturnType<typeof logLines>>;
  let json: Output;
  let pretty: Output;
  let prettyToStderr: Output;
  // Three processes side by side: each loads tsx, a few seconds on a busy machine.
  beforeAll(async () => {
    [json, pretty, prettyToStderr] = await Promise.all([
      logLines('json'),
      logLines('pretty'),
      logLines('pretty', 'stderr'),
    ]);
  }, 60_000);

  it('json: one JSON object a line, secrets redacted', () => {
    const { stdout } = json;
    const lines = stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0] ?? '');
    expect(line).toMatchObject({
      level: 30,
      name: 'logger-test',
      msg: 'hello from the logger',
      backupId: 'b-1',
      password: '[redacted]',
      job: { token: '[redacted]' },
      JWT_SECRET: '[redacted]',
    });
    expect(stdout).not.toContain(SECRET);
  });

  it('pretty: readable lines that are not JSON, secrets redacted', () => {
    const { stdout } = pretty;
    expect(stdout).toMatch(/INFO.*\(logger-test\).*hello from the logger/);
    for (const line of stdout.trim().split('\n')) {
      expect(() => JSON.parse(line), line).toThrow();
    }
    expect(stdout).toContain('backupId: "b-1"');
    expect(stdout).toContain('[redacted]');
    expect(stdout).not.toContain(SECRET);
    expect(stdout).not.toContain('below the level');
  });

  it('pretty to stderr leaves stdout empty', () => {
    const { stdout, stderr } = prettyToStderr;
    expect(stdout).toBe('');
    expect(stderr).toMatch(/hello from the logger/);
    expect(stderr).not.toContain(SECRET);
  });
});
