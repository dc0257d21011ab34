import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  dumpDirectoryExtractor,
  isDumpDirectoryFile,
  listDumpDirectory,
  startTarOfDirectory,
} from './directory-archive.js';
import { defaultDumpJobs } from './directory-dump.js';

let dir: string;

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pgkeep-dirarchive-'));
});

afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

type Entry = {
  name: string;
  data?: string;
  type?: 'file' | 'symlink' | 'directory';
  linkname?: string;
};

/** A tar built entry by entry, as anyone could write one. */
async function tarOf(entries: Entry[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const entry of entries) {
    const header = { name: entry.name, type: entry.type ?? 'file', linkname: entry.linkname };
    if (header.type === 'file') pack.entry(header, entry.data ?? '');
    else pack.entry(header, '');
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function extract(bytes: Buffer, expected: { files: number; bytes: number }) {
  const into = path.join(dir, 'out');
  await fs.mkdir(into);
  const { sink, extracted } = dumpDirectoryExtractor(into, expected);
  extracted.catch(() => {});
  await pipeline(Readable.from([bytes]), sink);
  return { into, result: await extracted };
}

const dump: Entry[] = [
  { name: 'toc.dat', data: 'PGDMP toc' },
  { name: '3456.dat', data: '1\tone\n2\ttwo\n\\.\n' },
  { name: 'blobs.toc', data: '16400 blob_16400.dat\n' },
  { name: 'blob_16400.dat', data: 'large' },
];
const dumpBytes = dump.reduce((sum, entry) => sum + (entry.data?.length ?? 0), 0);

describe('isDumpDirectoryFile', () => {
  it.each(['toc.dat', '3456.dat', 'blobs.toc', 'blobs_3500.toc', 'blob_16400.dat'])(
    'knows %s',
    (name) => expect(isDumpDirectoryFile(name)).toBe(true),
  );
  it.each(['../toc.dat', './toc.dat', 'x/1.dat', '3456.dat.gz', '.hidden', 'toc.dat\n', ''])(
    'refuses %j',
    (name) => expect(isDumpDirectoryFile(name)).toBe(false),
  );
});

describe('the tar of a dump directory', () => {
  it('is written by tar in order, toc.dat first, and read back byte for byte', async () => {
    const source = path.join(dir, 'dump');
    await fs.mkdir(source);
    for (const entry of dump) await fs.writeFile(path.join(source, entry.name), entry.data ?? '');
    const listing = await listDumpDirectory(source);
    expect(listing).toEqual({
      names: ['toc.dat', '3456.dat', 'blob_16400.dat', 'blobs.toc'],
      bytes: dumpBytes,
    });
    const tarChild = startTarOfDirectory(source, listing, undefined);
    const chunks: Buffer[] = [];
    for await (const chunk of tarChild.child.stdout ?? []) chunks.push(chunk as Buffer);
    await tarChild.done;
    const { into, result } = await extract(Buffer.concat(chunks), { files: 4, bytes: dumpBytes });
    expect(result).toEqual({ files: 4, bytes: dumpBytes });
    for (const entry of dump) {
      expect(await fs.readFile(path.join(into, entry.name), 'utf8')).toBe(entry.data);
    }
  });

  it('refuses a directory where pg_dump left something it never writes', async () => {
    const source = path.join(dir, 'dump');
    await fs.mkdir(source);
    await fs.writeFile(path.join(source, 'toc.dat'), 'toc');
    await fs.writeFile(path.join(source, 'notes.txt'), 'x');
    await expect(listDumpDirectory(source)).rejects.toThrow(/notes\.txt/);
  });

  it.each([
    ['a path outside the directory', [...dump, { name: '../evil.dat', data: 'x' }]],
    ['a subdirectory', [...dump, { name: 'sub', type: 'directory' as const }]],
    ['a symlink', [...dump, { name: '9.dat', type: 'symlink' as const, linkname: '/etc/passwd' }]],
    ['a name pg_dump never writes', [...dump, { name: 'run.sh', data: 'x' }]],
    ['a file twice', [...dump, { name: '3456.dat', data: '' }]],
  ])('refuses a tar with %s', async (_label, entries) => {
    const bytes = await tarOf(entries);
    await expect(extract(bytes, { files: 10, bytes: 10_000 })).rejects.toThrow(
      /not a directory-format dump|EEXIST/,
    );
    // Nothing was written outside the directory.
    await expect(fs.stat(path.join(dir, 'evil.dat'))).rejects.toThrow();
  });

  it.each([
    ['more files than recorded', { files: 3, bytes: dumpBytes }],
    ['more bytes than recorded', { files: 4, bytes: dumpBytes - 1 }],
    ['fewer files than recorded', { files: 5, bytes: dumpBytes }],
    ['fewer bytes than recorded', { files: 4, bytes: dumpBytes + 1 }],
  ])('refuses a tar with %s in its manifest', async (_label, expected) => {
    await expect(extract(await tarOf(dump), expected)).rejects.toThrow(/manifest records/);
  });

  it('refuses a tar without toc.dat', async () => {
    const entries = dump.filter((entry) => entry.name !== 'toc.dat');
    const bytes = dumpBytes - 'PGDMP toc'.length;
    await expect(extract(await tarOf(entries), { files: 3, bytes })).rejects.toThrow(/toc\.dat/);
  });
});

describe('defaultDumpJobs', () => {
  it('is the number of cores, from 1 to 4', () => {
    expect(defaultDumpJobs(1)).toBe(1);
    expect(defaultDumpJobs(2)).toBe(2);
    expect(defaultDumpJobs(64)).toBe(4);
    expect(defaultDumpJobs(0)).toBe(1);
  });
});
