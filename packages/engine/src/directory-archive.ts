import fs from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { AppError } from '@pgkeep/core';
import { type RunningChild, startChild } from '@pgkeep/pg';
import tar from 'tar-stream';

/**
 * A directory-format dump (`pg_dump -Fd --compress=0`) stored as one tar: which files it may
 * hold, the tar written from the dump's directory, and the tar read back into one. The reader
 * is strict, because it writes to disk: only regular files with the names pg_dump gives them,
 * flat, each once, and exactly the count and bytes the manifest recorded.
 */

/**
 * `toc.dat`, `<dump id>.dat` (a table's COPY data), and large objects: `blobs.toc` (up to
 * PostgreSQL 16) or `blobs_<dump id>.toc` (17 and later), and `blob_<oid>.dat`.
 */
const dumpFileName =
  /^(toc\.dat|[0-9]{1,10}\.dat|blobs(_[0-9]{1,10})?\.toc|blob_[0-9]{1,10}\.dat)$/;

export function isDumpDirectoryFile(name: string): boolean {
  return dumpFileName.test(name);
}

export interface DumpDirectoryListing {
  /** File names, toc.dat first, then by name: the order of the tar. */
  names: string[];
  bytes: number;
}

/** What pg_dump left in `dir`; anything it does not write there is refused. */
export async function listDumpDirectory(dir: string): Promise<DumpDirectoryListing> {
  const entries = await fs.readdir(dir, { withFileTypes: true });
  const names: string[] = [];
  let bytes = 0;
  for (const entry of entries) {
    if (!entry.isFile() || !isDumpDirectoryFile(entry.name)) {
      throw new AppError(
        'PG_DUMP_FAILED',
        `pg_dump's directory holds ${JSON.stringify(entry.name)}, which is not a file of a directory-format dump`,
      );
    }
    names.push(entry.name);
    bytes += (await fs.stat(path.join(dir, entry.name))).size;
  }
  if (!names.includes('toc.dat')) {
    throw new AppError('PG_DUMP_FAILED', "pg_dump's directory has no toc.dat");
  }
  names.sort((a, b) => (a === 'toc.dat' ? -1 : b === 'toc.dat' ? 1 : a.localeCompare(b)));
  return { names, bytes };
}

/** Bytes in `dir` so far (while pg_dump writes it): the progress of the dump. */
export async function directoryBytes(dir: string): Promise<number> {
  let bytes = 0;
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    bytes += (await fs.stat(path.join(dir, name)).catch(() => ({ size: 0 }))).size;
  }
  return bytes;
}

/**
 * GNU tar writing the listed files of `dir` as one POSIX (pax) tar to its stdout, which can go
 * straight into zstd through a kernel pipe. The names go through stdin, NUL-separated, so a
 * dump of many thousand tables meets no argument-length limit.
 */
export function startTarOfDirectory(
  dir: string,
  listing: DumpDirectoryListing,
  signal: AbortSignal | undefined,
): RunningChild {
  const tarChild = startChild(
    'tar',
    [
      '--create',
      '--file=-',
      '--format=posix',
      `--directory=${dir}`,
      '--no-recursion',
      '--null',
      '--verbatim-files-from',
      '--files-from=-',
    ],
    { env: { PATH: process.env.PATH }, signal, stdin: 'pipe' },
  );
  const { stdin } = tarChild.child;
  if (!stdin) throw new Error('tar was started without stdin');
  stdin.on('error', () => {}); // tar's own exit status says what went wrong
  stdin.end(Buffer.from(listing.names.map((name) => `${name}\0`).join('')));
  return tarChild;
}

export interface ExtractedDirectory {
  files: number;
  bytes: number;
}

function invalidArchive(message: string): AppError {
  return new AppError(
    'PG_RESTORE_FAILED',
    `the backup's tar is not a directory-format dump: ${message}`,
  );
}

/**
 * A Writable that takes a tar and writes its files into `dir` (which exists and is empty),
 * refusing anything but what listDumpDirectory would have listed, and more than `expected`.
 * `extracted` resolves once every file is written, with what was written; it rejects, and the
 * sink fails, on the first refusal.
 */
export function dumpDirectoryExtractor(
  dir: string,
  expected: ExtractedDirectory,
): { sink: Writable; extracted: Promise<ExtractedDirectory> } {
  const extract = tar.extract();
  const extracted = (async () => {
    let files = 0;
    let bytes = 0;
    for await (const entry of extract) {
      const { name, type, size } = entry.header;
      if (type !== 'file' || !isDumpDirectoryFile(name)) {
        throw invalidArchive(`it holds ${JSON.stringify(name)} (${type})`);
      }
      files += 1;
      if (files > expected.files || bytes + (size ?? 0) > expected.bytes) {
        throw invalidArchive(
          `it holds more than the ${expected.files} files and ${expected.bytes} bytes its manifest records`,
        );
      }
      // 'wx': a name that comes twice is refused, never written over.
      const handle = await fs.open(path.join(dir, name), 'wx', 0o600);
      try {
        for await (const chunk of entry) {
          const data = chunk as Buffer;
          bytes += data.length;
          if (bytes > expected.bytes) throw invalidArchive('a file is longer than its header says');
          await handle.write(data);
        }
      } finally {
        await handle.close();
      }
    }
    if (files !== expected.files || bytes !== expected.bytes) {
      throw invalidArchive(
        `it holds ${files} files and ${bytes} bytes; its manifest records ${expected.files} and ${expected.bytes}`,
      );
    }
    await fs.access(path.join(dir, 'toc.dat')).catch(() => {
      throw invalidArchive('it has no toc.dat');
    });
    return { files, bytes };
  })();
  let failed: Error | undefined;
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      if (failed) {
        callback(failed);
        return;
      }
      if (extract.write(chunk)) callback();
      else extract.once('drain', () => callback(failed));
    },
    final(callback) {
      extract.end(undefined);
      extracted.then(
        () => callback(),
        (error: unknown) => callback(error as Error),
      );
    },
    destroy(error, callback) {
      extract.destroy(error ?? undefined);
      callback(error);
    },
  });
  extracted.catch((error: unknown) => {
    failed = error as Error;
    sink.destroy(failed);
  });
  return { sink, extracted };
}
