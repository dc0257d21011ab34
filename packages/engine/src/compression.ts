import { Duplex, PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import type { Compression } from '@pgkeep/core';
import { type RunningChild, startChild } from '@pgkeep/pg';

export interface CompressionStage {
  stream: Duplex;
  /** Resolves when the compressor ended well (an external process exited with 0). */
  done: Promise<void>;
}

/** zstd reading another child's stdout through a kernel pipe, writing to a pipe or to `into`. */
function zstdFrom(
  input: Readable,
  level: number,
  signal: AbortSignal | undefined,
  into?: number,
  threads = 0,
): RunningChild {
  const zstd = startChild('zstd', [`-${level}`, `-T${threads}`, '-q', '-c'], {
    env: { PATH: process.env.PATH },
    signal,
    stdin: input,
    ...(into === undefined ? {} : { stdout: into }),
  });
  // zstd has its own copy of the pipe; ours must go, or the pipe would have two readers.
  input.destroy();
  return zstd;
}

/**
 * zstd reading another child's stdout directly: the uncompressed bytes never pass through
 * this process, only zstd's output does. That is what lets a backup run at the speed of
 * `pg_dump | zstd` (see BENCHMARKS.md).
 */
export function zstdReading(
  input: Readable,
  level: number,
  signal: AbortSignal | undefined,
  /** zstd -T: 0 is one thread per core. */
  threads = 0,
): { output: Readable; done: Promise<void> } {
  const zstd = zstdFrom(input, level, signal, undefined, threads);
  const { stdout } = zstd.child;
  if (!stdout) throw new Error('zstd was started without a stdout pipe');
  return { output: stdout, done: zstd.done };
}

/**
 * zstd writing straight into an open file: neither the uncompressed nor the compressed bytes
 * pass through this process (as `pg_dump | zstd -o f`).
 */
export function zstdIntoFile(
  input: Readable,
  level: number,
  fd: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  return zstdFrom(input, level, signal, fd).done;
}

/** zstd as a stream stage: its stdin and stdout as one Duplex, `done` its exit status. */
function zstdStage(args: string[], signal: AbortSignal | undefined): CompressionStage {
  const zstd: RunningChild = startChild('zstd', args, {
    env: { PATH: process.env.PATH },
    signal,
    stdin: 'pipe',
  });
  const { stdin, stdout } = zstd.child;
  if (!stdin || !stdout) throw new Error('zstd was started without pipes');
  return { stream: Duplex.from({ writable: stdin, readable: stdout }), done: zstd.done };
}

/**
 * zstd runs as its own process (multi-threaded, `-T0` = one thread per core): on this kind of
 * machine it turns a 39 s `pg_dump -Fc` into 17.5 s at the same size. gzip stays in-process.
 */
export function compressionStage(
  compression: Compression,
  levels: { zstd: number; gzip: number },
  signal?: AbortSignal,
  /** zstd -T: 0 is one thread per core. */
  threads = 0,
): CompressionStage {
  if (compression === 'zstd') {
    return zstdStage([`-${levels.zstd}`, `-T${threads}`, '-q', '-c'], signal);
  }
  if (compression === 'gzip') {
    return { stream: createGzip({ level: levels.gzip }), done: Promise.resolve() };
  }
  return { stream: new PassThrough(), done: Promise.resolve() };
}

/** The inverse: the artifact's bytes back to what pg_dump wrote. zstd checks its frame checksums. */
export function decompressionStage(
  compression: Compression,
  signal?: AbortSignal,
): CompressionStage {
  if (compression === 'zstd') return zstdStage(['-d', '-c', '-q'], signal);
  if (compression === 'gzip') return { stream: createGunzip(), done: Promise.resolve() };
  return { stream: new PassThrough(), done: Promise.resolve() };
}

/**
 * The stages of a backup joined into the one stream every destination reads, encryption (when
 * on) last so that each gets the same bytes. A failure anywhere ends that stream with the error.
 */
export function joinStages(
  stages: [Readable, ...Duplex[]],
  encryption: { stream: Duplex } | null,
): Readable {
  if (stages.length === 1 && !encryption) return stages[0];
  const tail: Duplex = encryption ? encryption.stream : new PassThrough();
  pipeline([...stages, tail]).catch((error: unknown) => tail.destroy(error as Error));
  return tail;
}
