import { createHash, randomBytes } from 'node:crypto';
import fsCallbacks from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip, gunzipSync } from 'node:zlib';
import {
  AppError,
  artifactFilename,
  type BackupManifest,
  createLogger,
  manifestFilename,
} from '@pgkeep/core';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { LocalStorage } from './local-storage.js';

const logger = createLogger('silent', 'test');
let dir: string;
let storage: LocalStorage;

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pgkeep-storage-'));
  storage = new LocalStorage(dir, logger);
});

afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

/** Writes through the stages, runs `beforeCommit`, commits; discards on any failure. */
async function write(
  filename: string,
  stages: [Readable, ...Duplex[]],
  onBytes?: (bytes: number) => void,
  options: { signal?: AbortSignal; beforeCommit?: () => Promise<void> } = {},
) {
  // The stages chained; an error anywhere destroys the last one, which the write sees.
  const source = stages[stages.length - 1] as Readable;
  if (stages.length > 1) pipeline(stages as unknown as [Readable, Duplex]).catch(() => {});
  const staged = await storage.writeArtifact(filename, source, { onBytes, signal: options.signal });
  try {
    await options.beforeCommit?.();
    await staged.commit();
  } catch (error) {
    await staged.discard();
    throw error;
  }
  return { filename: staged.filename, size: staged.size, sha256: staged.sha256 };
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const files = async () => (await fs.readdir(dir)).sort();

function impliedLocalCopy(manifest: BackupManifest) {
  return {
    destination: 'local',
    location: manifest.filename,
    size: manifest.size,
    sha256: manifest.sha256,
    writtenAt: manifest.completedAt,
  };
}

function manifest(id: string, overrides: Partial<BackupManifest> = {}): BackupManifest {
  const createdAt = overrides.createdAt ?? '2026-01-22T16:30:00.000Z';
  const base: BackupManifest = {
    manifestVersion: 1,
    id,
    filename: artifactFilename(id, 'custom', 'zstd'),
    size: 3,
    sha256: 'ab'.repeat(32),
    createdAt,
    completedAt: createdAt,
    durationMs: 0,
    type: 'manual',
    status: 'completed',
    format: 'custom',
    compression: 'zstd',
    tables: null,
    database: 'app',
    serverVersion: '16.1',
    pgDumpVersion: '16.1',
    rowCounts: {},
    requestedBy: 'admin',
    label: null,
    jobId: null,
    encryption: null,
    copies: [],
    failedCopies: [],
  };
  const merged = { ...base, ...overrides };
  // As read back: a version-1 manifest describes the one local copy beside it.
  return merged.copies.length > 0 ? merged : { ...merged, copies: [impliedLocalCopy(merged)] };
}

async function expectAppError(promise: Promise<unknown>, code: string): Promise<AppError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(AppError);
  expect((error as AppError).code).toBe(code);
  return error as AppError;
}

/** A source that yields `chunks` and then fails, like a pg_dump that dies midway. */
function failingSource(chunks: Buffer[], error: Error): Readable {
  return Readable.from(
    (async function* () {
      for (const chunk of chunks) yield chunk;
      throw error;
    })(),
  );
}

const idA = '2026-01-20T02-00-00-000Z-aaaaaaaaaaaa';
const idB = '2026-01-21T02-00-00-000Z-bbbbbbbbbbbb';
const idC = '2026-01-22T02-00-00-000Z-cccccccccccc';

describe('LocalStorage.writeArtifact', () => {
  it('writes exactly the streamed bytes and reports their sha256 and size', async () => {
    const chunks = Array.from({ length: 40 }, () => randomBytes(64 * 1024 + 7));
    const data = Buffer.concat(chunks);
    const progress: number[] = [];
    const filename = artifactFilename(idA, 'custom', 'none');
    const written = await write(filename, [Readable.from(chunks)], (bytes) => progress.push(bytes));
    expect(written).toEqual({ filename, size: data.length, sha256: sha256(data) });
    expect((await fs.readFile(path.join(dir, filename))).equals(data)).toBe(true);
    expect(await files()).toEqual([filename]);
    expect(progress.at(-1)).toBe(data.length);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    const mode = (await fs.stat(path.join(dir, filename))).mode & 0o777;
    expect(mode).toBe(0o600);
  });

  it('hashes what lands on disk after the stages (gzip)', async () => {
    const data = Buffer.from('COPY public."User" FROM stdin;\n'.repeat(2000));
    const filename = artifactFilename(idA, 'plain', 'gzip');
    const written = await write(filename, [Readable.from([data]), createGzip()]);
    const onDisk = await fs.readFile(path.join(dir, filename));
    expect(written.sha256).toBe(sha256(onDisk));
    expect(written.size).toBe(onDisk.length);
    expect(gunzipSync(onDisk).equals(data)).toBe(true);
  });

  it('writes an empty stream as an empty file', async () => {
    const filename = artifactFilename(idA, 'plain', 'none');
    const written = await write(filename, [Readable.from([])]);
    expect(written).toEqual({ filename, size: 0, sha256: sha256(Buffer.alloc(0)) });
    expect((await fs.stat(path.join(dir, filename))).size).toBe(0);
  });

  it('leaves no file and no .partial when the source fails midway', async () => {
    const filename = artifactFilename(idA, 'custom', 'zstd');
    const source = failingSource(
      [randomBytes(100_000), randomBytes(100_000)],
      new Error('pg_dump died'),
    );
    await expect(write(filename, [source])).rejects.toThrow('pg_dump died');
    expect(await files()).toEqual([]);
  });

  it('leaves nothing when a stage fails', async () => {
    const filename = artifactFilename(idA, 'custom', 'gzip');
    // Not gzip data: the gunzip stage errors on it.
    const source = Readable.from([Buffer.from('this is not gzip data at all')]);
    await expect(write(filename, [source, createGunzip()])).rejects.toThrow();
    expect(await files()).toEqual([]);
  });

  it('leaves nothing when beforeCommit refuses the file', async () => {
    const filename = artifactFilename(idA, 'custom', 'zstd');
    let seenPartial: string[] = [];
    const writing = write(filename, [Readable.from([Buffer.from('data')])], undefined, {
      beforeCommit: async () => {
        seenPartial = await files();
        throw new Error('compressor exited with 1');
      },
    });
    await expect(writing).rejects.toThrow('compressor exited with 1');
    // The data was complete in the partial file, never under the final name.
    expect(seenPartial).toEqual([`${filename}.partial`]);
    expect(await files()).toEqual([]);
  });

  it('stops and leaves nothing when aborted midway', async () => {
    const controller = new AbortController();
    const filename = artifactFilename(idA, 'custom', 'zstd');
    // A source that never ends on its own: only the abort can stop the write.
    const source = new Readable({
      read() {
        this.push(randomBytes(16 * 1024));
      },
    });
    const writing = write(
      filename,
      [source],
      (bytes) => {
        if (bytes > 256 * 1024) controller.abort();
      },
      { signal: controller.signal },
    );
    await expect(writing).rejects.toThrow();
    expect(await files()).toEqual([]);
  });

  it('refuses to replace an existing artifact and leaves it untouched', async () => {
    const filename = artifactFilename(idA, 'custom', 'zstd');
    await fs.writeFile(path.join(dir, filename), 'the older backup');
    await expectAppError(
      write(filename, [Readable.from([Buffer.from('new data')])]),
      'STORAGE_ERROR',
    );
    expect(await fs.readFile(path.join(dir, filename), 'utf8')).toBe('the older backup');
    expect(await files()).toEqual([filename]);
  });

  it.each(['../escape.dump', 'sub/dir.dump', '.hidden', 'a\\b'])(
    'refuses the unsafe file name %j',
    async (filename) => {
      await expectAppError(write(filename, [Readable.from([Buffer.from('x')])]), 'STORAGE_ERROR');
      expect(await files()).toEqual([]);
      await expect(fs.access(path.join(dir, '..', 'escape.dump'))).rejects.toThrow();
    },
  );
});

describe('LocalStorage: the artifact reaches the disk while it is written', () => {
  /** Counts fdatasync calls on every open file (FileHandle's own method). */
  async function datasyncSpy() {
    const probe = await fs.open(path.join(dir, 'probe'), 'w');
    const prototype = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> };
    await probe.close();
    await fs.rm(path.join(dir, 'probe'));
    return vi.spyOn(prototype, 'datasync');
  }

  it('writeArtifact flushes behind the stream, before its end', async () => {
    const spy = await datasyncSpy();
    try {
      const pieces = Array.from({ length: 40 }, (_, i) => Buffer.alloc(1024 * 1024, i));
      let flushesBeforeEnd = -1;
      const source = Readable.from(
        (async function* () {
          for (const [i, piece] of pieces.entries()) {
            if (i === pieces.length - 1) flushesBeforeEnd = spy.mock.calls.length;
            yield piece;
            await new Promise((resolve) => setImmediate(resolve));
          }
        })(),
      );
      const filename = artifactFilename(idA, 'custom', 'none');
      const written = await write(filename, [source]);
      expect(flushesBeforeEnd).toBeGreaterThanOrEqual(1);
      expect(written.sha256).toBe(sha256(Buffer.concat(pieces)));
      expect(await files()).toEqual([filename]);
    } finally {
      spy.mockRestore();
    }
  });

  it('writeArtifactFrom flushes behind the other writer, before it is done', async () => {
    const spy = await datasyncSpy();
    try {
      const pieces = Array.from({ length: 40 }, (_, i) => Buffer.alloc(1024 * 1024, i));
      let flushesBeforeEnd = -1;
      const filename = artifactFilename(idA, 'custom', 'zstd');
      const staged = await storage.writeArtifactFrom(filename, async (fd) => {
        for (const piece of pieces) {
          await new Promise<void>((resolve, reject) =>
            fsCallbacks.write(fd, piece, (error) => (error ? reject(error) : resolve())),
          );
          // Gives the reader behind the writer its turn, as zstd's pauses do.
          await new Promise((resolve) => setTimeout(resolve, 2));
        }
        flushesBeforeEnd = spy.mock.calls.length;
      });
      expect(flushesBeforeEnd).toBeGreaterThanOrEqual(1);
      expect(staged.sha256).toBe(sha256(Buffer.concat(pieces)));
      await staged.commit();
    } finally {
      spy.mockRestore();
    }
  });
});

describe('LocalStorage manifests', () => {
  it('writes a manifest that getManifest and listManifests return, newest first', async () => {
    const a = manifest(idA, { createdAt: '2026-01-20T02:00:00.000Z' });
    const b = manifest(idB, { createdAt: '2026-01-21T02:00:00.000Z', type: 'scheduled' });
    const c = manifest(idC, { createdAt: '2026-01-22T02:00:00.000Z', label: 'before deploy' });
    for (const m of [b, c, a]) await storage.writeManifest(m);
    expect(await storage.getManifest(idB)).toEqual(b);
    const listed = await storage.listManifests();
    expect(listed.invalid).toEqual([]);
    expect(listed.manifests.map((m) => m.id)).toEqual([idC, idB, idA]);
    expect(listed.manifests[0]).toEqual(c);
    expect(await files()).toEqual([idA, idB, idC].map(manifestFilename));
    const mode = (await fs.stat(path.join(dir, manifestFilename(idA)))).mode & 0o777;
    expect(mode).toBe(0o600);
  });

  it('orders backups created in the same instant by id, newest id first', async () => {
    const at = '2026-01-22T02:00:00.000Z';
    const low = '2026-01-22T02-00-00-000Z-000001000001';
    const high = '2026-01-22T02-00-00-000Z-00000f00000f';
    await storage.writeManifest(manifest(low, { createdAt: at }));
    await storage.writeManifest(manifest(high, { createdAt: at }));
    expect((await storage.listManifests()).manifests.map((m) => m.id)).toEqual([high, low]);
  });

  it('replaces a manifest of the same id atomically', async () => {
    await storage.writeManifest(manifest(idA));
    await storage.writeManifest(manifest(idA, { label: 'renamed' }));
    expect((await storage.getManifest(idA))?.label).toBe('renamed');
    expect(await files()).toEqual([manifestFilename(idA)]);
  });

  it('refuses to write an invalid manifest and writes nothing', async () => {
    const bad = manifest(idA, { filename: '../../etc/passwd' });
    await expect(storage.writeManifest(bad)).rejects.toThrow();
    expect(await files()).toEqual([]);
  });

  it('returns undefined for a backup that does not exist', async () => {
    expect(await storage.getManifest(idA)).toBeUndefined();
  });

  it.each(['../x', '', '..', '2026-01-22T02-00-00-000Z/../../x', `${idA}\n`])(
    'refuses the id %j with INVALID_BACKUP_ID',
    async (id) => {
      const error = await expectAppError(storage.getManifest(id), 'INVALID_BACKUP_ID');
      expect(error.status).toBe(400);
    },
  );

  it('lists nothing for a directory that does not exist yet', async () => {
    const missing = new LocalStorage(path.join(dir, 'not-created'), logger);
    expect(await missing.listManifests()).toEqual({ manifests: [], invalid: [] });
  });

  it('skips and reports manifests that are not valid', async () => {
    const good = manifest(idA);
    await storage.writeManifest(good);
    await fs.writeFile(path.join(dir, manifestFilename(idB)), '{"manifestVersion": 1, ');
    // Valid in every field but pointing a later delete at another file.
    const pointing = { ...manifest(idC), filename: '../../etc/passwd' };
    await fs.writeFile(path.join(dir, manifestFilename(idC)), JSON.stringify(pointing));
    // A valid manifest of another backup saved under this id's name.
    const otherId = '2026-01-23T02-00-00-000Z-dddddddddddd';
    await fs.writeFile(path.join(dir, manifestFilename(otherId)), JSON.stringify(manifest(idA)));
    await fs.writeFile(path.join(dir, 'backup-not-an-id.manifest.json'), JSON.stringify(good));
    // Unrelated files are not manifests at all.
    await fs.writeFile(path.join(dir, 'notes.json'), '{');

    const { manifests, invalid } = await storage.listManifests();
    expect(manifests).toEqual([good]);
    expect(invalid.map((entry) => entry.file).sort()).toEqual(
      [
        manifestFilename(idB),
        manifestFilename(idC),
        manifestFilename(otherId),
        'backup-not-an-id.manifest.json',
      ].sort(),
    );
    for (const entry of invalid) expect(entry.reason).toBeTruthy();
    expect(invalid.find((entry) => entry.file === manifestFilename(otherId))?.reason).toBe(
      'id does not match',
    );

    await expectAppError(storage.getManifest(idB), 'MANIFEST_INVALID');
    await expectAppError(storage.getManifest(idC), 'MANIFEST_INVALID');
    await expectAppError(storage.getManifest(otherId), 'MANIFEST_INVALID');
  });
});

describe('LocalStorage.deleteBackup', () => {
  it('removes the manifest and the artifact, and nothing else', async () => {
    const a = manifest(idA);
    const b = manifest(idB);
    for (const m of [a, b]) {
      await write(m.filename, [Readable.from([Buffer.from(m.id)])]);
      await storage.writeManifest(m);
    }
    await storage.deleteBackup(a);
    expect(await files()).toEqual([b.filename, manifestFilename(idB)].sort());
    expect(await storage.getManifest(idA)).toBeUndefined();
    expect((await storage.listManifests()).manifests.map((m) => m.id)).toEqual([idB]);
  });

  it('succeeds when the artifact is already gone', async () => {
    const a = manifest(idA);
    await storage.writeManifest(a);
    await storage.deleteBackup(a);
    expect(await files()).toEqual([]);
  });
});

describe('LocalStorage.sweepLeftovers', () => {
  it('removes partial files and artifacts without a manifest, keeps the rest', async () => {
    const complete = manifest(idA);
    await write(complete.filename, [Readable.from([Buffer.from('ok')])]);
    await storage.writeManifest(complete);
    const orphan = artifactFilename(idB, 'plain', 'gzip');
    const partial = `${artifactFilename(idC, 'custom', 'zstd')}.partial`;
    const manifestPartial = `${manifestFilename(idC)}.0a1b2c3d.partial`;
    for (const name of [orphan, partial, manifestPartial]) {
      await fs.writeFile(path.join(dir, name), 'leftover');
    }
    const unrelated = ['notes.txt', 'README.md', 'backup-notes.txt', 'other.dump'];
    for (const name of unrelated) await fs.writeFile(path.join(dir, name), 'keep me');

    const removed = await storage.sweepLeftovers();
    expect(removed.sort()).toEqual([orphan, partial, manifestPartial].sort());
    expect(await files()).toEqual([complete.filename, manifestFilename(idA), ...unrelated].sort());
    expect(await storage.getManifest(idA)).toEqual(complete);
    expect(await fs.readFile(path.join(dir, complete.filename), 'utf8')).toBe('ok');
  });

  it("removes a directory-format dump's scratch directory, files and all", async () => {
    const scratch = path.join(dir, `backup-${idC}.dump-0a1b2c3d.partial`);
    await fs.mkdir(scratch);
    await fs.writeFile(path.join(scratch, 'toc.dat'), 'toc');
    await fs.writeFile(path.join(scratch, '3456.dat'), 'rows');
    const orphan = artifactFilename(idB, 'directory', 'zstd', true);
    await fs.writeFile(path.join(dir, orphan), 'tar');
    const removed = await storage.sweepLeftovers();
    expect(removed.sort()).toEqual([orphan, path.basename(scratch)].sort());
    expect(await files()).toEqual([]);
  });

  it("never touches the panel's old backups, which have no manifest", async () => {
    const legacy = ['backup-2026-01-22T16-30-00-000Z.sql', 'backup-2025-12-01T02-00-00-000Z.sql'];
    for (const name of legacy) await fs.writeFile(path.join(dir, name), 'panel dump');
    expect(await storage.sweepLeftovers()).toEqual([]);
    expect(await files()).toEqual(legacy.sort());
  });

  it('removes nothing from a clean directory and creates it when missing', async () => {
    const fresh = new LocalStorage(path.join(dir, 'fresh'), logger);
    expect(await fresh.sweepLeftovers()).toEqual([]);
    expect((await fs.stat(path.join(dir, 'fresh'))).isDirectory()).toBe(true);
  });
});

describe('LocalStorage.checkWritable', () => {
  it('creates the directory and leaves no probe file behind', async () => {
    const nested = new LocalStorage(path.join(dir, 'a', 'b'), logger);
    await nested.checkWritable();
    expect(await fs.readdir(path.join(dir, 'a', 'b'))).toEqual([]);
  });
});

describe('LocalStorage.writeArtifactFrom', () => {
  it('hashes the bytes another writer puts into the partial file, while it writes them', async () => {
    const filename = artifactFilename(idA, 'custom', 'zstd');
    const pieces = Array.from({ length: 12 }, () => randomBytes(300_000));
    const progress: number[] = [];
    const staged = await storage.writeArtifactFrom(
      filename,
      async (fd) => {
        // A writer that writes in bursts, yielding between them, as zstd does.
        for (const piece of pieces) {
          await new Promise<void>((resolve, reject) =>
            fsCallbacks.write(fd, piece, (error) => (error ? reject(error) : resolve())),
          );
          await new Promise((resolve) => setImmediate(resolve));
        }
      },
      { onBytes: (bytes) => progress.push(bytes) },
    );
    const data = Buffer.concat(pieces);
    expect({ size: staged.size, sha256: staged.sha256 }).toEqual({
      size: data.length,
      sha256: sha256(data),
    });
    expect(progress.at(-1)).toBe(data.length);
    expect(await files()).toEqual([`${filename}.partial`]);
    expect((await fs.stat(path.join(dir, `${filename}.partial`))).mode & 0o777).toBe(0o600);
    await staged.commit();
    expect(await files()).toEqual([filename]);
    expect((await fs.readFile(path.join(dir, filename))).equals(data)).toBe(true);
  });

  it('leaves nothing when the writer fails', async () => {
    const filename = artifactFilename(idA, 'custom', 'zstd');
    const writing = storage.writeArtifactFrom(filename, async (fd) => {
      fsCallbacks.writeSync(fd, randomBytes(100_000));
      throw new Error('zstd exited with 1');
    });
    await expect(writing).rejects.toThrow('zstd exited with 1');
    expect(await files()).toEqual([]);
  });
});
