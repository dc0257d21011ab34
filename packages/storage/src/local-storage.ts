import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  AppError,
  artifactIdOf,
  type BackupManifest,
  type CatalogKeys,
  isBackupId,
  isStorageFull,
  type Logger,
  manifestFilename,
  manifestSchema,
  manifestText,
  newestFirst,
  parseManifestText,
  storageFullError,
  unsignedCatalog,
} from '@pgkeep/core';
import type {
  ByteRange,
  Destination,
  InvalidManifest,
  StagedArtifact,
  WriteOptions,
} from './destination.js';
import { FlushBehind, fsyncDir, PARTIAL_SUFFIX } from './durable-files.js';
import { hashFile, hashGrowingFile } from './file-hash.js';

const MANIFEST_SUFFIX = '.manifest.json';

/**
 * Backups in a local directory. Storage is the catalog: an artifact plus a manifest beside it,
 * and a backup exists exactly when its manifest does. Every write goes to a `.partial` file,
 * is fsynced and renamed; the manifest is written the same way, last.
 */
export class LocalStorage implements Destination {
  readonly dir: string;

  constructor(
    dir: string,
    private readonly logger: Logger,
    /** Manifests written here are signed with these, and read back only if they verify. */
    readonly catalogKeys: CatalogKeys = unsignedCatalog,
  ) {
    this.dir = path.resolve(dir);
  }

  async ensureDir(): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true });
  }

  /** Paths are only ever built from names that passed the strict id pattern. */
  private pathOf(filename: string): string {
    if (filename.includes('/') || filename.includes('\\') || filename.startsWith('.')) {
      throw new AppError('STORAGE_ERROR', 'refused an unsafe file name');
    }
    return path.join(this.dir, filename);
  }

  private fsyncDir(): Promise<void> {
    return fsyncDir(this.dir);
  }

  readonly name = 'local';
  readonly kind = 'local' as const;
  readonly required = true;

  /** This destination as a job error names it: `local (/path/to/BACKUP_DIR)`. */
  get where(): string {
    return `${this.name} (${this.dir})`;
  }

  /** A write's failure as the job's error: a full disk (ENOSPC, EDQUOT) is STORAGE_FULL. */
  writeError(error: unknown): unknown {
    return isStorageFull(error) ? storageFullError(this.where, error) : error;
  }

  locationOf(filename: string): string {
    return this.pathOf(filename);
  }

  /**
   * Streams `source` into `<filename>.partial` (opened O_EXCL, mode 0600) with sha256 and size
   * computed on the way, sent to disk as it grows (FlushBehind), then fsync. `commit` links it to its final name (refusing to replace
   * anything) and fsyncs the directory; `discard` removes whichever exists. On any failure the
   * partial file is removed and nothing else is touched.
   */
  async writeArtifact(
    filename: string,
    source: Readable,
    options: WriteOptions = {},
  ): Promise<StagedArtifact> {
    const finalPath = this.pathOf(filename);
    const partialPath = `${finalPath}${PARTIAL_SUFFIX}`;
    const hash = createHash('sha256');
    let size = 0;
    const { onBytes } = options;
    // 'wx': never overwrite an artifact of the same name, partial or not.
    const handle = await fs.open(partialPath, 'wx', 0o600).catch((error: unknown) => {
      throw this.writeError(error);
    });
    const flush = new FlushBehind(handle);
    const file = createWriteStream('', { fd: handle.fd, autoClose: false });
    const measure = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        hash.update(chunk);
        size += chunk.length;
        onBytes?.(size);
        // Flushed behind what the file stream has written, not what it still buffers.
        flush.written(file.bytesWritten);
        callback(null, chunk);
      },
    });
    try {
      await pipeline([source, measure, file], options.signal ? { signal: options.signal } : {});
      await flush.finish();
      await handle.close();
    } catch (error) {
      source.destroy();
      await flush.settle();
      await handle.close().catch(() => {});
      await fs.rm(partialPath, { force: true });
      throw this.writeError(error);
    }
    return this.staged(filename, partialPath, finalPath, { size, sha256: hash.digest('hex') });
  }

  /** A fully written, fsynced `.partial` file, not yet under its final name. */
  private staged(
    filename: string,
    partialPath: string,
    finalPath: string,
    written: { size: number; sha256: string },
  ): StagedArtifact {
    let committed = false;
    return {
      filename,
      size: written.size,
      sha256: written.sha256,
      commit: async () => {
        await fs.link(partialPath, finalPath).catch(async (error: NodeJS.ErrnoException) => {
          // link refuses to replace an existing file where rename would silently do so.
          if (error.code === 'EEXIST') throw new AppError('STORAGE_ERROR', `${filename} exists`);
          throw this.writeError(error);
        });
        committed = true;
        await fs.unlink(partialPath);
        await this.fsyncDir();
      },
      discard: async () => {
        await fs.rm(partialPath, { force: true });
        if (committed) await fs.rm(finalPath, { force: true });
      },
    };
  }

  /**
   * As writeArtifact, but another process writes the file: `produce` gets the open `.partial`
   * file's descriptor and resolves when the writer is done. The sha256 is taken while the
   * file grows, by reading behind the writer (the bytes never pass through a pipe here).
   */
  async writeArtifactFrom(
    filename: string,
    produce: (fd: number) => Promise<void>,
    options: WriteOptions = {},
  ): Promise<StagedArtifact> {
    const finalPath = this.pathOf(filename);
    const partialPath = `${finalPath}${PARTIAL_SUFFIX}`;
    const handle = await fs.open(partialPath, 'wx', 0o600).catch((error: unknown) => {
      throw this.writeError(error);
    });
    let hashed: { sha256: string; size: number };
    const flush = new FlushBehind(handle);
    try {
      let finished = false;
      const producing = produce(handle.fd).finally(() => {
        finished = true;
      });
      const reading = hashGrowingFile(partialPath, () => finished, {
        ...options,
        onBytes: (size) => {
          // What the hash has read, the writer has written: flushed behind it.
          flush.written(size);
          options.onBytes?.(size);
        },
      });
      const [produced, read] = await Promise.allSettled([producing, reading]);
      if (produced.status === 'rejected') throw produced.reason;
      if (read.status === 'rejected') throw read.reason;
      hashed = read.value;
      await flush.finish();
      await handle.close();
    } catch (error) {
      await flush.settle();
      await handle.close().catch(() => {});
      await fs.rm(partialPath, { force: true });
      // zstd writing the file itself reports a full disk on its stderr.
      throw this.writeError(error);
    }
    return this.staged(filename, partialPath, finalPath, hashed);
  }

  async openArtifact(filename: string, range?: ByteRange): Promise<Readable> {
    const file = this.pathOf(filename);
    // Opened here, so that a missing file is an error now rather than on the stream.
    const handle = await fs.open(file, 'r').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') {
        throw new AppError('ARTIFACT_MISSING', `the artifact ${filename} is missing from local`);
      }
      throw error;
    });
    return handle.createReadStream(range ? { start: range.start, end: range.end } : {});
  }

  async statArtifact(filename: string): Promise<{ size: number } | undefined> {
    try {
      return { size: (await fs.stat(this.pathOf(filename))).size };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  /** Written last: from this moment the backup exists. */
  async writeManifest(manifest: BackupManifest): Promise<void> {
    const valid = manifestSchema.parse(manifest);
    const finalPath = this.pathOf(manifestFilename(valid.id));
    const partialPath = `${finalPath}.${randomBytes(4).toString('hex')}${PARTIAL_SUFFIX}`;
    const handle = await fs.open(partialPath, 'wx', 0o600).catch((error: unknown) => {
      throw this.writeError(error);
    });
    try {
      await handle.writeFile(manifestText(valid, this.catalogKeys));
      await handle.sync();
      await handle.close();
      await fs.rename(partialPath, finalPath);
      await this.fsyncDir();
    } catch (error) {
      await handle.close().catch(() => {});
      await fs.rm(partialPath, { force: true });
      if (isStorageFull(error)) throw this.writeError(error);
      throw new AppError('STORAGE_ERROR', 'could not write the manifest', { cause: error });
    }
  }

  /** The artifact's path, for tools that read the file themselves (pg_restore, zstd). */
  artifactPath(filename: string): string {
    return this.pathOf(filename);
  }

  /**
   * sha256 and size of the artifact as it is on disk now, for comparison with its manifest:
   * a flipped byte or a truncated file shows here before anything reads it further.
   */
  async hashArtifact(
    manifest: BackupManifest,
    onBytes?: (bytesRead: number) => void,
    signal?: AbortSignal,
  ): Promise<{ sha256: string; size: number }> {
    try {
      return await hashFile(this.pathOf(manifest.filename), onBytes, signal);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new AppError('CHECKSUM_MISMATCH', `the artifact ${manifest.filename} is missing`);
      }
      throw error;
    }
  }

  /**
   * A scratch file beside the backups (same disk, so no surprise about space elsewhere), named
   * so that the leftover sweep removes it if the worker dies while it exists.
   */
  scratchPath(manifest: BackupManifest, purpose: string): string {
    return this.scratchPathOf(manifest.id, purpose);
  }

  /** As scratchPath, for a backup being made (no manifest yet); a file or a directory. */
  scratchPathOf(id: string, purpose: string): string {
    if (!isBackupId(id)) throw new AppError('INVALID_BACKUP_ID', 'invalid backup id');
    return this.pathOf(
      `backup-${id}.${purpose}-${randomBytes(4).toString('hex')}${PARTIAL_SUFFIX}`,
    );
  }

  /** Removes an artifact that has no manifest yet (a backup that failed after its rename). */
  async removeArtifact(filename: string): Promise<void> {
    await fs.rm(this.pathOf(filename), { force: true });
  }

  async deleteManifest(id: string): Promise<void> {
    if (!isBackupId(id)) throw new AppError('INVALID_BACKUP_ID', 'invalid backup id');
    await fs.rm(this.pathOf(manifestFilename(id)), { force: true });
    await this.fsyncDir();
  }

  readManifest(id: string): Promise<BackupManifest | undefined> {
    return this.getManifest(id);
  }

  async getManifest(id: string): Promise<BackupManifest | undefined> {
    if (!isBackupId(id)) throw new AppError('INVALID_BACKUP_ID', 'invalid backup id');
    let text: string;
    try {
      text = await fs.readFile(this.pathOf(manifestFilename(id)), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new AppError('STORAGE_ERROR', 'could not read the manifest', { cause: error });
    }
    const parsed = parseManifestText(text, id, this.catalogKeys);
    if (!parsed.ok) {
      throw new AppError(
        'MANIFEST_INVALID',
        `the manifest of backup ${id} is not valid: ${parsed.reason}`,
      );
    }
    return parsed.manifest;
  }

  /** Every valid manifest, newest first. Files that fail validation are reported, not listed. */
  async listManifests(): Promise<{ manifests: BackupManifest[]; invalid: InvalidManifest[] }> {
    let names: string[];
    try {
      names = await fs.readdir(this.dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { manifests: [], invalid: [] };
      throw new AppError('STORAGE_ERROR', 'could not read the backup directory', { cause: error });
    }
    const manifests: BackupManifest[] = [];
    const invalid: InvalidManifest[] = [];
    for (const name of names) {
      if (!name.startsWith('backup-') || !name.endsWith(MANIFEST_SUFFIX)) continue;
      const id = name.slice('backup-'.length, -MANIFEST_SUFFIX.length);
      if (!isBackupId(id)) {
        invalid.push({ file: name, reason: 'file name is not a backup id' });
        continue;
      }
      let text: string;
      try {
        text = await fs.readFile(this.pathOf(name), 'utf8');
      } catch (error) {
        // Deleted between readdir and read: it is gone, which is what a list should say.
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw error;
      }
      const parsed = parseManifestText(text, id, this.catalogKeys);
      if (parsed.ok) manifests.push(parsed.manifest);
      else invalid.push({ file: name, reason: parsed.reason });
    }
    if (invalid.length > 0) this.logger.warn({ invalid }, 'manifests skipped: not valid');
    manifests.sort(newestFirst);
    return { manifests, invalid };
  }

  /**
   * Deletes one backup: the manifest first, so it leaves the catalog in one atomic step, then
   * the artifact. A crash between the two leaves an unlisted file that the sweep removes.
   */
  async deleteBackup(manifest: BackupManifest): Promise<void> {
    await fs.rm(this.pathOf(manifestFilename(manifest.id)), { force: true });
    await fs.rm(this.pathOf(manifest.filename), { force: true });
    await this.fsyncDir();
  }

  /**
   * Removes what an interrupted backup of pgkeep's own left: `.partial` files and directories
   * (scratch copies, directory-format dumps), and artifacts
   * named with a pgkeep id (which carries a random suffix) that have no manifest. Anything else
   * in the directory, the panel's old `backup-<timestamp>.sql` files included, is never touched.
   * Only call this while no backup can be writing (the storage-write lock held exclusively).
   */
  async sweepLeftovers(): Promise<string[]> {
    await this.ensureDir();
    const names = await fs.readdir(this.dir);
    const manifests = new Set(names.filter((name) => name.endsWith(MANIFEST_SUFFIX)));
    const removed: string[] = [];
    for (const name of names) {
      if (!name.startsWith('backup-')) continue;
      const partial = name.endsWith(PARTIAL_SUFFIX);
      const id = artifactIdOf(name);
      const orphan = id !== undefined && isBackupId(id) && !manifests.has(manifestFilename(id));
      if (partial || orphan) {
        // Recursive: a directory-format dump's scratch directory is a `.partial` too.
        await fs.rm(this.pathOf(name), { force: true, recursive: true });
        removed.push(name);
      }
    }
    if (removed.length > 0)
      this.logger.info({ removed }, 'removed leftovers of unfinished backups');
    return removed;
  }

  /** Health: bytes an unprivileged process may still write on the backup directory's file system. */
  async freeBytes(): Promise<number> {
    const stats = await fs.statfs(this.dir);
    return stats.bavail * stats.bsize;
  }

  /** Health: can this process create, write and remove a file in the backup directory? */
  async checkWritable(): Promise<void> {
    await this.ensureDir();
    const probe = path.join(this.dir, `.write-check-${randomBytes(4).toString('hex')}`);
    await fs.writeFile(probe, 'ok');
    await fs.rm(probe, { force: true });
  }
}
