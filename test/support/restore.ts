import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';

function run(
  command: string,
  args: string[],
  input: Readable,
  env: NodeJS.ProcessEnv,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`${command} exited ${code}: ${stderr}`)),
    );
    pipeline(input, child.stdin).catch(reject);
  });
}

function decompressed(file: string): Readable {
  const source = createReadStream(file);
  if (file.endsWith('.gz')) return source.pipe(createGunzip());
  if (file.endsWith('.zst')) {
    const zstd = spawn('zstd', ['-d', '-c', '-q'], { stdio: ['pipe', 'pipe', 'inherit'] });
    source.pipe(zstd.stdin);
    return zstd.stdout;
  }
  return source.pipe(new PassThrough());
}

/** Restores an artifact the way a person would by hand, with the stock tools. */
export async function restoreByHand(file: string, databaseUrl: string): Promise<void> {
  const env = { PATH: process.env.PATH };
  if (/\.dump(\.|$)/.test(file)) {
    await run(
      'pg_restore',
      ['--exit-on-error', '--no-owner', `--dbname=${databaseUrl}`],
      decompressed(file),
      env,
    );
  } else {
    await run(
      'psql',
      ['-q', '-X', '-v', 'ON_ERROR_STOP=1', '--single-transaction', `--dbname=${databaseUrl}`],
      decompressed(file),
      env,
    );
  }
}
