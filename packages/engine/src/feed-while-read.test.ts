import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { feedWhileRead } from './feed-while-read.js';

const MiB = 1024 * 1024;

/** `total` bytes in 64 KiB chunks, each chunk's bytes counted as the source hands it on. */
function source(total: number) {
  let handed = 0;
  const chunk = Buffer.alloc(64 * 1024, 7);
  const counted = new Transform({
    transform(data: Buffer, _encoding, callback) {
      handed += data.length;
      callback(null, data);
    },
  });
  const chunks = Array.from({ length: Math.ceil(total / chunk.length) }, () => chunk);
  return { streams: [Readable.from(chunks), counted] as const, handed: () => handed };
}

function exitOf(child: ReturnType<typeof spawn>) {
  return once(child, 'close').then(([code]) => code as number | null);
}

describe('feedWhileRead', () => {
  it('hands every byte to a child that reads to the end', async () => {
    const child = spawn('sha256sum', [], { stdio: ['pipe', 'pipe', 'ignore'] });
    const out: Buffer[] = [];
    child.stdout?.on('data', (data: Buffer) => out.push(data));
    const exit = exitOf(child);
    const input = source(4 * MiB);
    await pipeline([
      ...input.streams,
      feedWhileRead(child.stdin as NonNullable<typeof child.stdin>),
    ]);
    expect(await exit).toBe(0);
    const expected = createHash('sha256')
      .update(Buffer.alloc(4 * MiB, 7))
      .digest('hex');
    expect(Buffer.concat(out).toString().split(' ')[0]).toBe(expected);
    expect(input.handed()).toBe(4 * MiB);
  });

  it('does not fail when the child exits before the end of its input; the rest is still read', async () => {
    // head stops after 16 bytes and exits 0, as pg_restore does after an archive's last entry.
    const child = spawn('head', ['-c', '16'], { stdio: ['pipe', 'ignore', 'ignore'] });
    const exit = exitOf(child);
    const input = source(8 * MiB);
    await pipeline([
      ...input.streams,
      feedWhileRead(child.stdin as NonNullable<typeof child.stdin>),
    ]);
    expect(await exit).toBe(0);
    expect(input.handed()).toBe(8 * MiB);
  });

  it('fails when a stage before it fails, and gives the child the end of its input', async () => {
    const child = spawn('cat', [], { stdio: ['pipe', 'ignore', 'ignore'] });
    const exit = exitOf(child);
    const broken = new Transform({
      transform(_data, _encoding, callback) {
        callback(new Error('unexpected end of file'));
      },
    });
    await expect(
      pipeline([
        Readable.from([Buffer.from('x')]),
        broken,
        feedWhileRead(child.stdin as NonNullable<typeof child.stdin>),
      ]),
    ).rejects.toThrow('unexpected end of file');
    // cat ends (its stdin closed) instead of waiting for more input forever.
    expect(await exit).toBe(0);
  });
});
