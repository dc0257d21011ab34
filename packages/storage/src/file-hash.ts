import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as delay } from 'node:timers/promises';
import type { WriteOptions } from './destination.js';

/** sha256 and size of a file as it is on disk now. */
export async function hashFile(
  file: string,
  onBytes?: (bytesRead: number) => void,
  signal?: AbortSignal,
): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  await pipeline(
    createReadStream(file),
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        hash.update(chunk);
        size += chunk.length;
        onBytes?.(size);
        callback();
      },
    }),
    signal ? { signal } : {},
  );
  return { sha256: hash.digest('hex'), size };
}

/**
 * sha256 and size of a file another process is appending to, read behind the writer until
 * `finished()` says it is done and nothing is left. Waits 10 ms whenever it has caught up.
 */
export async function hashGrowingFile(
  file: string,
  finished: () => boolean,
  options: WriteOptions,
): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  const handle = await fs.open(file, 'r');
  const buffer = Buffer.allocUnsafe(1024 * 1024);
  let size = 0;
  try {
    for (;;) {
      options.signal?.throwIfAborted();
      // Read after noting whether the writer had finished: an empty read then means the end.
      const writerDone = finished();
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, size);
      if (bytesRead > 0) {
        hash.update(buffer.subarray(0, bytesRead));
        size += bytesRead;
        options.onBytes?.(size);
        continue;
      }
      if (writerDone) break;
      await delay(10);
    }
  } finally {
    await handle.close();
  }
  return { sha256: hash.digest('hex'), size };
}
