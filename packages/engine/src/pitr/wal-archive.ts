import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  AppError,
  type ArchivedWal,
  type BaseBackupManifest,
  baseBackupManifestFilename,
  baseBackupManifestSchema,
  type Config,
  type Logger,
  pitrStoragePrefix,
  type ServerSettings,
  toAppError,
  type WalEntry,
  walEntrySchema,
} from '@pgkeep/core';
import { type BackupStore, createBackupStore, type KeyRing } from '@pgkeep/storage';
import { compressionStage, decompressionStage } from '../compression.js';

/** What the archive knows of the cluster it holds: WAL of any other cluster must not mix in. */
export interface ArchiveIdentity {
  systemIdentifier: string;
  walSegmentSize: number;
}

const CATALOG_FILE = 'wal-catalog.jsonl';
const IDENTITY_FILE = 'archive.json';

async function writeFileDurably(file: string, text: string): Promise<void> {
  const partial = `${file}.${randomBytes(4).toString('hex')}.partial`;
  const handle = await fs.open(partial, 'wx', 0o600);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.rename(partial, file);
  const dir = await fs.open(path.dirname(file), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/**
 * One server's WAL archive and base backups. The files go to every destination of the server's
 * PITR settings under `pitr/<server>/`; the catalog is local, in `BACKUP_DIR/pitr/<server>/
 * catalog/`: `wal-catalog.jsonl` (a line per archived or removed WAL file, only ever appended)
 * and one `basebackup-<id>.json` per base backup (also copied beside its artifact in every
 * destination).
 */
export class WalArchive {
  readonly catalogDir: string;
  readonly spoolDir: string;

  private constructor(
    readonly server: string,
    readonly store: BackupStore,
    private readonly keyRing: KeyRing,
    private readonly encrypt: boolean,
    private readonly zstdLevel: number,
    private readonly logger: Logger,
    root: string,
  ) {
    this.catalogDir = path.join(root, 'catalog');
    this.spoolDir = path.join(root, 'spool');
  }

  static async open(
    config: Config,
    logger: Logger,
    server: ServerSettings,
    keyRing: KeyRing,
  ): Promise<WalArchive> {
    const pitr = server.pitr;
    if (!pitr) throw new AppError('PITR_NOT_ENABLED', `server ${server.name} has no pitr`);
    const prefix = pitrStoragePrefix(server.name);
    const store = await createBackupStore(config, logger, {
      prefix,
      destinations: pitr.destinations,
      keyRing,
    });
    const archive = new WalArchive(
      server.name,
      store,
      keyRing,
      pitr.encryption && keyRing.writeKeyId !== null,
      config.BACKUP_ZSTD_LEVEL,
      logger.child({ server: server.name }),
      path.join(config.BACKUP_DIR, prefix),
    );
    await fs.mkdir(archive.catalogDir, { recursive: true });
    await fs.mkdir(archive.spoolDir, { recursive: true });
    await store.ensureDir();
    return archive;
  }

  async identity(): Promise<ArchiveIdentity | undefined> {
    try {
      const parsed = JSON.parse(
        await fs.readFile(path.join(this.catalogDir, IDENTITY_FILE), 'utf8'),
      ) as ArchiveIdentity;
      if (typeof parsed.systemIdentifier !== 'string') return undefined;
      return parsed;
    } catch {
      return undefined;
    }
  }

  /**
   * Records the cluster this archive holds the first time, and refuses any other afterwards: a
   * server re-created under the same name starts its WAL names again from the beginning.
   */
  async claim(identity: ArchiveIdentity): Promise<void> {
    const known = await this.identity();
    if (!known) {
      await writeFileDurably(
        path.join(this.catalogDir, IDENTITY_FILE),
        `${JSON.stringify(identity)}\n`,
      );
      return;
    }
    if (known.systemIdentifier !== identity.systemIdentifier) {
      throw new AppError(
        'PITR_UNAVAILABLE',
        `the server's system identifier ${identity.systemIdentifier} is not the archive's (${known.systemIdentifier}): it is another cluster; move ${pitrStoragePrefix(this.server)} aside to start a new archive`,
      );
    }
  }

  /** Every line of the catalog, in order; a torn last line (a crash mid-append) is skipped. */
  async entries(): Promise<WalEntry[]> {
    let text: string;
    try {
      text = await fs.readFile(path.join(this.catalogDir, CATALOG_FILE), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    const entries: WalEntry[] = [];
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      try {
        const parsed = walEntrySchema.safeParse(JSON.parse(line));
        if (parsed.success) entries.push(parsed.data);
      } catch {
        // torn or foreign line: not an entry
      }
    }
    return entries;
  }

  /** The catalog as read so far: lines are only appended, so a read goes on from `offset`. */
  private cache:
    | { inode: number; offset: number; pending: string; live: Map<string, ArchivedWal> }
    | undefined;

  /**
   * The WAL files archived now (removed ones left out), by name. Reads only what was appended
   * since the last call (the catalog of a long-kept archive holds many thousand lines).
   */
  async archived(): Promise<Map<string, ArchivedWal>> {
    const file = path.join(this.catalogDir, CATALOG_FILE);
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(file, 'r');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      this.cache = undefined;
      return new Map();
    }
    try {
      const { ino, size } = await handle.stat();
      let cache = this.cache;
      if (!cache || cache.inode !== ino || size < cache.offset) {
        cache = { inode: ino, offset: 0, pending: '', live: new Map() };
        this.cache = cache;
      }
      if (size > cache.offset) {
        const buffer = Buffer.alloc(size - cache.offset);
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, cache.offset);
        cache.offset += bytesRead;
        const lines = (cache.pending + buffer.subarray(0, bytesRead).toString('utf8')).split('\n');
        // A last line without its newline is still being written (or torn): kept for later.
        cache.pending = lines.pop() ?? '';
        for (const line of lines) {
          if (line.trim() === '') continue;
          let entry: WalEntry;
          try {
            const parsed = walEntrySchema.safeParse(JSON.parse(line));
            if (!parsed.success) continue;
            entry = parsed.data;
          } catch {
            continue; // torn or foreign line: not an entry
          }
          if (entry.op === 'archived') cache.live.set(entry.name, entry);
          else cache.live.delete(entry.name);
        }
      }
      return new Map(cache.live);
    } finally {
      await handle.close();
    }
  }

  private async append(entry: WalEntry): Promise<void> {
    const handle = await fs.open(path.join(this.catalogDir, CATALOG_FILE), 'a+', 0o600);
    try {
      // A crash mid-append leaves a torn line without its newline: a line written straight
      // after it would join it and be lost with it, so it starts on a line of its own.
      const { size } = await handle.stat();
      const last = Buffer.alloc(1);
      if (size > 0) await handle.read(last, 0, 1, size - 1);
      const torn = size > 0 && last[0] !== 0x0a;
      // One write of one line, O_APPEND: lines of two writers never interleave.
      await handle.write(`${torn ? '\n' : ''}${JSON.stringify(entry)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  /**
   * Copies one finished WAL file from the spool to every destination (zstd, sha256 of the WAL
   * and of what is stored, encrypted when the server's PITR says so), records it, and only then
   * removes it from the spool. A file already archived with the same bytes is just removed.
   */
  async archiveFile(
    file: string,
    name: string,
    coveredUntil: Date | null,
    signal?: AbortSignal,
  ): Promise<ArchivedWal> {
    const known = (await this.archived()).get(name);
    const walHash = createHash('sha256');
    let walSize = 0;
    if (known) {
      await pipeline(createReadStream(file), walHash);
      // pipeline ends the hash; digest reads it.
      if (walHash.digest('hex') === known.walSha256) {
        await fs.rm(file, { force: true });
        return known;
      }
      throw new AppError(
        'PITR_ARCHIVE_CONFLICT',
        `WAL file ${name} is archived already with other contents`,
      );
    }
    const encryption = this.encrypt ? this.keyRing.encryptStream() : null;
    const filename = `${name}.zst${encryption ? '.enc' : ''}`;
    // A copy left by an attempt that died before the catalog line was written.
    for (const destination of this.store.destinations) {
      if (await destination.statArtifact(filename)) await destination.removeArtifact(filename);
    }
    const tap = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        walHash.update(chunk);
        walSize += chunk.length;
        callback(null, chunk);
      },
    });
    const zstd = compressionStage('zstd', { zstd: this.zstdLevel, gzip: 6 }, signal);
    const tail = encryption ? encryption.stream : new PassThrough();
    const flowing = pipeline([createReadStream(file), tap, zstd.stream, tail]);
    flowing.catch((error: unknown) => tail.destroy(error as Error));
    const written = await this.store.writeCopies(filename, tail, {
      signal,
      beforeCommit: async () => {
        await flowing;
        await zstd.done;
      },
    });
    const entry: ArchivedWal = {
      op: 'archived',
      name,
      filename,
      walSize,
      walSha256: walHash.digest('hex'),
      size: written.size,
      sha256: written.sha256,
      encryption: encryption
        ? {
            algorithm: 'aes-256-gcm-stream-v1',
            keyId: encryption.keyId,
            chunkBytes: encryption.chunkBytes,
          }
        : null,
      destinations: written.copies.map((copy) => copy.destination),
      archivedAt: new Date().toISOString(),
      coveredUntil: coveredUntil?.toISOString() ?? null,
    };
    if (written.failedCopies.length > 0) {
      this.logger.warn(
        { wal: name, failed: written.failedCopies.map((copy) => copy.destination) },
        'WAL file not copied to every optional destination',
      );
    }
    try {
      await this.append(entry);
    } catch (error) {
      await written.discard();
      throw error;
    }
    await fs.rm(file, { force: true });
    return entry;
  }

  /**
   * What interrupted writes left in the local copy of the archive: `wal` (partial WAL copies;
   * only the receiver's leader writes those), or `basebackup` (partial and unlisted base backup
   * artifacts and read-back directories; only while no base backup of the server runs).
   */
  async sweepLeftovers(kind: 'wal' | 'basebackup'): Promise<string[]> {
    const root = path.dirname(this.catalogDir);
    const listed = new Set(
      (await this.baseBackups()).manifests.map((manifest) => manifest.filename),
    );
    const removed: string[] = [];
    for (const name of await fs.readdir(root).catch(() => [] as string[])) {
      const leftover =
        kind === 'wal'
          ? /^([0-9A-F]{24}|[0-9A-F]{8}\.history)\.zst(\.enc)?\.partial$/.test(name)
          : /^verify-/.test(name) ||
            (/^basebackup-.+\.tar\.zst(\.enc)?(\.partial)?$/.test(name) &&
              !listed.has(name.replace(/\.partial$/, '')));
      if (!leftover) continue;
      await fs.rm(path.join(root, name), { recursive: true, force: true });
      removed.push(name);
    }
    if (removed.length > 0) {
      this.logger.info({ removed }, 'removed leftovers of interrupted archive writes');
    }
    return removed;
  }

  /** Removes archived WAL files from every destination, then records each as removed. */
  async removeWal(entries: readonly ArchivedWal[]): Promise<void> {
    for (const entry of entries) {
      for (const name of entry.destinations) {
        const destination = this.store.destination(name);
        if (!destination) continue;
        await destination.removeArtifact(entry.filename);
      }
      await this.append({ op: 'removed', name: entry.name, removedAt: new Date().toISOString() });
    }
  }

  /** Reads one archived WAL file back as PostgreSQL wrote it (sha256 checked by the caller). */
  async openWal(entry: ArchivedWal): Promise<Readable> {
    let last: unknown;
    for (const name of entry.destinations) {
      const destination = this.store.destination(name);
      if (!destination) continue;
      try {
        const stored = await destination.openArtifact(entry.filename);
        const decrypt = entry.encryption
          ? this.keyRing.decryptStream(entry.encryption.keyId)
          : new PassThrough();
        const decompress = decompressionStage('zstd');
        const output = new PassThrough();
        pipeline([stored, decrypt, decompress.stream, output]).catch((error: unknown) =>
          output.destroy(error as Error),
        );
        return output;
      } catch (error) {
        last = error;
      }
    }
    throw new AppError(
      'ARTIFACT_MISSING',
      `WAL file ${entry.name} is in no readable destination: ${toAppError(last).message}`,
    );
  }

  async baseBackups(): Promise<{
    manifests: BaseBackupManifest[];
    invalid: { file: string; reason: string }[];
  }> {
    const manifests: BaseBackupManifest[] = [];
    const invalid: { file: string; reason: string }[] = [];
    let names: string[];
    try {
      names = await fs.readdir(this.catalogDir);
    } catch {
      return { manifests, invalid };
    }
    for (const file of names) {
      if (!/^basebackup-.+\.json$/.test(file)) continue;
      try {
        const parsed = baseBackupManifestSchema.safeParse(
          JSON.parse(await fs.readFile(path.join(this.catalogDir, file), 'utf8')),
        );
        if (parsed.success && baseBackupManifestFilename(parsed.data.id) === file) {
          manifests.push(parsed.data);
        } else {
          invalid.push({ file, reason: parsed.success ? 'named for another id' : 'invalid' });
        }
      } catch {
        invalid.push({ file, reason: 'not JSON' });
      }
    }
    manifests.sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt));
    return { manifests, invalid };
  }

  /** Beside the artifact in every destination it has a copy in, then in the catalog. */
  async saveBaseBackup(manifest: BaseBackupManifest): Promise<void> {
    const text = `${JSON.stringify(manifest, null, 2)}\n`;
    const filename = baseBackupManifestFilename(manifest.id);
    for (const copy of manifest.copies) {
      const destination = this.store.destination(copy.destination);
      if (!destination) continue;
      if (await destination.statArtifact(filename)) await destination.removeArtifact(filename);
      const staged = await destination.writeArtifact(filename, Readable.from([Buffer.from(text)]));
      await staged.commit();
    }
    await writeFileDurably(path.join(this.catalogDir, filename), text);
  }

  /** Out of the catalog first (no longer listed), then every copy and its manifest. */
  async removeBaseBackup(manifest: BaseBackupManifest): Promise<void> {
    await fs.rm(path.join(this.catalogDir, baseBackupManifestFilename(manifest.id)), {
      force: true,
    });
    for (const copy of manifest.copies) {
      const destination = this.store.destination(copy.destination);
      if (!destination) continue;
      await destination.removeArtifact(baseBackupManifestFilename(manifest.id));
      await destination.removeArtifact(manifest.filename);
    }
  }
}
