import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FlushBehind, type SyncableFile } from './durable-files.js';

/** A file whose flushes are held until released, recording what was asked of it. */
function heldFile(failFlush?: Error) {
  const calls: string[] = [];
  const releases: Array<() => void> = [];
  const file: SyncableFile = {
    datasync: () => {
      calls.push('datasync');
      return new Promise<void>((resolve, reject) => {
        releases.push(() => (failFlush ? reject(failFlush) : resolve()));
      });
    },
    sync: async () => {
      calls.push('sync');
    },
  };
  const releaseAll = async () => {
    for (const release of releases.splice(0)) release();
    // Lets the flush's own continuations run.
    await new Promise((resolve) => setImmediate(resolve));
  };
  return { file, calls, releaseAll };
}

describe('FlushBehind', () => {
  it('flushes once per `every` bytes written, never two at a time, and fsyncs at the end', async () => {
    const { file, calls, releaseAll } = heldFile();
    const flush = new FlushBehind(file, 100);
    flush.written(99);
    expect(calls).toEqual([]);
    flush.written(100);
    expect(calls).toEqual(['datasync']);
    // Still in flight: no second flush, however much is written meanwhile.
    flush.written(250);
    flush.written(900);
    expect(calls).toEqual(['datasync']);
    await releaseAll();
    flush.written(950);
    expect(calls).toEqual(['datasync', 'datasync']);
    // Less than `every` since that flush began: none.
    await releaseAll();
    flush.written(1000);
    expect(calls).toEqual(['datasync', 'datasync']);
    flush.written(1050);
    expect(calls).toEqual(['datasync', 'datasync', 'datasync']);
    // finish waits for the flush in flight, then makes the whole file durable.
    const finishing = flush.finish();
    await new Promise((resolve) => setImmediate(resolve));
    expect(calls.at(-1)).toBe('datasync');
    await releaseAll();
    await finishing;
    expect(calls).toEqual(['datasync', 'datasync', 'datasync', 'sync']);
  });

  it("throws a flush's error from finish, which a later fsync on the same file may not see", async () => {
    const eio = Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
    const { file, calls, releaseAll } = heldFile(eio);
    const flush = new FlushBehind(file, 10);
    flush.written(10);
    await releaseAll();
    // No further flushes once one failed; the error waits for finish.
    flush.written(100);
    await expect(flush.finish()).rejects.toBe(eio);
    expect(calls).toEqual(['datasync']);
  });

  it('settle waits for the flush in flight and throws nothing', async () => {
    const { file, releaseAll } = heldFile(new Error('EIO'));
    const flush = new FlushBehind(file, 1);
    flush.written(1);
    let settled = false;
    const settling = flush.settle().then(() => {
      settled = true;
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(settled).toBe(false);
    await releaseAll();
    await settling;
    expect(settled).toBe(true);
  });

  it('leaves a real file whole and durable when flushed while it grows', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pgkeep-flush-'));
    try {
      const handle = await fs.open(path.join(dir, 'f'), 'wx', 0o600);
      const flush = new FlushBehind(handle, 64 * 1024);
      const piece = Buffer.alloc(100_000, 7);
      let size = 0;
      for (let i = 0; i < 20; i += 1) {
        await handle.write(piece);
        size += piece.length;
        flush.written(size);
      }
      await flush.finish();
      await handle.close();
      expect((await fs.stat(path.join(dir, 'f'))).size).toBe(2_000_000);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
