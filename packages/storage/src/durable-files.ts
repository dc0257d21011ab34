import { constants } from 'node:fs';
import fs from 'node:fs/promises';

/** A file being written is `<name>.partial` until renamed; the leftover sweep removes these. */
export const PARTIAL_SUFFIX = '.partial';

/** Makes a rename or a removal in `dir` durable: fsync of the directory itself. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** What FlushBehind needs of an open file. */
export interface SyncableFile {
  datasync(): Promise<void>;
  sync(): Promise<void>;
}

/**
 * Sends a file that is still growing to disk as it grows, so that the fsync which makes it
 * durable at the end waits only for the last few megabytes. Linux leaves written pages dirty
 * for up to 30 s (and up to 10 % of memory) before writing them back on its own, so without
 * this the final fsync of a backup writes the whole artifact after the dump is over: about
 * 150 ms for a 181 MB artifact on a disk that takes 455 MB/s, every one of them on the job's
 * clock. An `fdatasync` starts each time `every` more bytes have been written, one at a time,
 * on libuv's thread pool while the writer goes on.
 *
 * An error from one of those flushes is kept and thrown by `finish`: Linux reports a
 * write-back error once per open file, so the final fsync on the same descriptor may no longer
 * see it.
 */
export class FlushBehind {
  private flushedAt = 0;
  private inFlight: Promise<void> | null = null;
  private failure: { error: unknown } | null = null;

  constructor(
    private readonly file: SyncableFile,
    private readonly every = 8 * 1024 * 1024,
  ) {}

  /** The file now holds `size` bytes. */
  written(size: number): void {
    if (this.inFlight || this.failure || size - this.flushedAt < this.every) return;
    this.flushedAt = size;
    this.inFlight = this.file
      .datasync()
      .catch((error: unknown) => {
        this.failure ??= { error };
      })
      .finally(() => {
        this.inFlight = null;
      });
  }

  /** The flush in flight, if any, to its end (for a writer that gives up). */
  async settle(): Promise<void> {
    await this.inFlight;
  }

  /** Once the writer is done: the whole file durable (fsync), or the first flush's error. */
  async finish(): Promise<void> {
    await this.settle();
    if (this.failure) throw this.failure.error;
    await this.file.sync();
  }
}
