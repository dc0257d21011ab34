import type { Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import {
  AppError,
  type BackupCopy,
  type BackupManifest,
  catalogKeyId,
  type Logger,
  toAppError,
} from '@pgkeep/core';
import type { Destination, InvalidManifest, StagedArtifact } from './destination.js';
import { fanOut } from './fan-out.js';
import type { LocalStorage } from './local-storage.js';

export interface FailedCopy {
  destination: string;
  code: string;
  message: string;
}

export interface WrittenCopies {
  filename: string;
  size: number;
  sha256: string;
  copies: BackupCopy[];
  /** Optional destinations that did not get a copy. */
  failedCopies: FailedCopy[];
  /** Removes every copy written (before the manifest exists). */
  discard(): Promise<void>;
}

export interface BackupStoreOptions {
  copyAttempts: number;
  copyRetryDelayMs: number;
}

export interface CopyWriteOptions {
  signal?: AbortSignal | undefined;
  sizeHint?: number | undefined;
  onBytes?: ((bytesWritten: number) => void) | undefined;
  /** Runs once the bytes are stored and before anything becomes visible; a throw discards all. */
  beforeCommit?: (() => Promise<void>) | undefined;
}

interface Outcome {
  destination: Destination;
  staged?: StagedArtifact;
  error?: AppError;
}

/**
 * Every destination a backup is copied to, and the catalog. The catalog is the manifests in
 * BACKUP_DIR (always local, fast to list); each destination also holds a copy of each manifest
 * beside the artifact, so that the catalog can be rebuilt from any of them.
 */
export class BackupStore {
  constructor(
    readonly catalog: LocalStorage,
    readonly destinations: Destination[],
    private readonly logger: Logger,
    private readonly options: BackupStoreOptions,
  ) {
    if (destinations.length === 0) throw new Error('a backup store needs a destination');
  }

  /** The catalog's directory (BACKUP_DIR), where scratch files also go. */
  get dir(): string {
    return this.catalog.dir;
  }

  /** The local destination, when BACKUP_DESTINATIONS names it. */
  get local(): LocalStorage | undefined {
    return this.destinations.find((destination) => destination.kind === 'local') as
      | LocalStorage
      | undefined;
  }

  /** A scratch file in BACKUP_DIR that the leftover sweep removes if the worker dies. */
  scratchPath(manifest: BackupManifest, purpose: string): string {
    return this.catalog.scratchPath(manifest, purpose);
  }

  /** A scratch file or directory in BACKUP_DIR for a backup being made, swept the same way. */
  scratchPathOf(id: string, purpose: string): string {
    return this.catalog.scratchPathOf(id, purpose);
  }

  destination(name: string): Destination | undefined {
    return this.destinations.find((destination) => destination.name === name);
  }

  async ensureDir(): Promise<void> {
    await this.catalog.ensureDir();
  }

  listManifests() {
    return this.catalog.listManifests();
  }

  getManifest(id: string) {
    return this.catalog.getManifest(id);
  }

  freeBytes() {
    return this.catalog.freeBytes();
  }

  checkWritable() {
    return this.catalog.checkWritable();
  }

  /**
   * The copies of a backup that this deployment can read, local first, then in the manifest's
   * order. A copy in a destination no longer configured is left out.
   */
  readOrder(manifest: BackupManifest): { copy: BackupCopy; destination: Destination }[] {
    const order: { copy: BackupCopy; destination: Destination }[] = [];
    for (const copy of manifest.copies) {
      const destination = this.destination(copy.destination);
      if (destination) order.push({ copy, destination });
    }
    return order.sort(
      (a, b) => Number(b.destination.kind === 'local') - Number(a.destination.kind === 'local'),
    );
  }

  /**
   * One stream written to every destination at once. A remote copy that fails while the dump
   * streams is written again from the local copy (no second dump), up to BACKUP_COPY_ATTEMPTS
   * times; a required copy that still fails fails the backup and every copy is removed; an
   * optional one is reported in `failedCopies`. Nothing is visible until `beforeCommit` passed.
   */
  async writeCopies(
    filename: string,
    source: Readable,
    options: CopyWriteOptions = {},
  ): Promise<WrittenCopies> {
    const local = this.local;
    const abort = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, abort.signal]) : abort.signal;
    const branches = fanOut(source, this.destinations.length);
    // Progress from the local copy when there is one: it is the one the disk paces.
    const reporter = local ?? this.destinations[0];
    const outcomes: Outcome[] = await Promise.all(
      this.destinations.map(async (destination, index) => {
        const branch = branches[index] as Readable;
        try {
          const staged = await destination.writeArtifact(filename, branch, {
            signal,
            sizeHint: options.sizeHint,
            onBytes: destination === reporter ? options.onBytes : undefined,
          });
          return { destination, staged };
        } catch (error) {
          branch.destroy();
          // Fatal: the local copy, or a required copy that has no local copy to come from.
          if (destination === local || (destination.required && !local)) {
            abort.abort(error);
          }
          return { destination, error: toAppError(error) };
        }
      }),
    );
    const staged = outcomes.flatMap((outcome) => (outcome.staged ? [outcome.staged] : []));
    const discardAll = async () => {
      for (const artifact of staged) await artifact.discard().catch(() => {});
    };
    try {
      if (options.signal?.aborted) throw options.signal.reason ?? new Error('aborted');
      const fatal = outcomes.find(
        (outcome) =>
          outcome.error &&
          (outcome.destination === local || (outcome.destination.required && !local)),
      );
      // The error that stopped the write, not the aborts it caused in the other copies.
      if (fatal?.error) throw abort.signal.aborted ? toAppError(abort.signal.reason) : fatal.error;
      if (staged.length === 0) throw new AppError('COPY_FAILED', 'no copy could be written');
      await options.beforeCommit?.();
      const first = staged[0] as StagedArtifact;
      for (const artifact of staged) {
        if (artifact.sha256 !== first.sha256 || artifact.size !== first.size) {
          throw new AppError('STORAGE_ERROR', 'the copies of one artifact differ');
        }
      }
      // Local first: the retries below read from it.
      const ordered = [...outcomes].sort(
        (a, b) => Number(b.destination === local) - Number(a.destination === local),
      );
      for (const outcome of ordered) await outcome.staged?.commit();
      const failedCopies: FailedCopy[] = [];
      for (const outcome of outcomes) {
        if (!outcome.error) continue;
        const retried = local
          ? await this.copyFromLocal(local, outcome.destination, filename, first, options.signal)
          : { error: outcome.error };
        if ('staged' in retried) {
          outcome.staged = retried.staged;
          staged.push(retried.staged);
          continue;
        }
        const error = retried.error;
        if (outcome.destination.required) {
          throw new AppError(
            'COPY_FAILED',
            `the copy to ${outcome.destination.name} failed: ${error.message}`,
            { retryable: true, cause: error },
          );
        }
        this.logger.warn(
          { destination: outcome.destination.name, code: error.code, err: error.message },
          'optional copy not written',
        );
        failedCopies.push({
          destination: outcome.destination.name,
          code: error.code,
          message: error.message,
        });
      }
      const writtenAt = new Date().toISOString();
      const copies: BackupCopy[] = outcomes.flatMap((outcome) =>
        outcome.staged
          ? [
              {
                destination: outcome.destination.name,
                location: outcome.destination.locationOf(filename),
                size: outcome.staged.size,
                sha256: outcome.staged.sha256,
                writtenAt,
              },
            ]
          : [],
      );
      return {
        filename,
        size: first.size,
        sha256: first.sha256,
        copies,
        failedCopies,
        discard: discardAll,
      };
    } catch (error) {
      await discardAll();
      throw error;
    }
  }

  /** True when the only destination is the local directory (another process may write it). */
  get localOnly(): boolean {
    return this.destinations.length === 1 && this.local !== undefined;
  }

  /**
   * The local-only case of writeCopies, for a writer that is another process (zstd writing
   * the file itself): `produce` gets the open `.partial` file's descriptor.
   */
  async writeLocalFrom(
    filename: string,
    produce: (fd: number) => Promise<void>,
    options: CopyWriteOptions = {},
  ): Promise<WrittenCopies> {
    const local = this.local;
    if (!local || !this.localOnly)
      throw new Error('writeLocalFrom needs the local destination alone');
    const staged = await local.writeArtifactFrom(filename, produce, {
      signal: options.signal,
      onBytes: options.onBytes,
    });
    try {
      await options.beforeCommit?.();
      await staged.commit();
    } catch (error) {
      await staged.discard();
      throw error;
    }
    return {
      filename,
      size: staged.size,
      sha256: staged.sha256,
      copies: [
        {
          destination: local.name,
          location: local.locationOf(filename),
          size: staged.size,
          sha256: staged.sha256,
          writtenAt: new Date().toISOString(),
        },
      ],
      failedCopies: [],
      discard: () => staged.discard(),
    };
  }

  /** A failed copy written again from the committed local artifact, with a pause between tries. */
  private async copyFromLocal(
    local: LocalStorage,
    destination: Destination,
    filename: string,
    expected: { size: number; sha256: string },
    signal: AbortSignal | undefined,
  ): Promise<{ staged: StagedArtifact } | { error: AppError }> {
    let last: AppError = new AppError('COPY_FAILED', 'not attempted');
    for (let attempt = 1; attempt <= this.options.copyAttempts; attempt += 1) {
      if (attempt > 1 || this.options.copyRetryDelayMs > 0) {
        await delay(this.options.copyRetryDelayMs * attempt, undefined, { signal });
      }
      try {
        const staged = await destination.writeArtifact(
          filename,
          await local.openArtifact(filename),
          { signal, sizeHint: expected.size },
        );
        if (staged.sha256 !== expected.sha256 || staged.size !== expected.size) {
          await staged.discard();
          throw new AppError(
            'COPY_FAILED',
            `the copy to ${destination.name} differs from the local one`,
          );
        }
        await staged.commit();
        this.logger.info(
          { destination: destination.name, attempt },
          'copy written again from the local copy',
        );
        return { staged };
      } catch (error) {
        if (signal?.aborted) throw error;
        last = toAppError(error);
        this.logger.warn(
          { destination: destination.name, attempt, code: last.code, err: last.message },
          'copy failed',
        );
      }
    }
    return { error: last };
  }

  /**
   * The manifest beside every copy (remote ones first), then in the catalog: from that moment
   * the backup exists. A required destination that refuses its manifest fails the backup.
   */
  async commitManifest(manifest: BackupManifest): Promise<void> {
    for (const copy of manifest.copies) {
      const destination = this.destination(copy.destination);
      if (!destination || destination === this.catalog) continue;
      try {
        await destination.writeManifest(manifest);
      } catch (error) {
        if (destination.required) {
          throw new AppError(
            'COPY_FAILED',
            `the manifest could not be written to ${destination.name}: ${toAppError(error).message}`,
            { retryable: true, cause: error },
          );
        }
        this.logger.warn(
          { destination: destination.name, err: toAppError(error).message },
          'manifest not written to an optional destination',
        );
      }
    }
    await this.catalog.writeManifest(manifest);
  }

  /**
   * Deletes a backup everywhere: each remote copy (its manifest, then its artifact), then the
   * catalog's manifest, then the local artifact. If a remote copy cannot be deleted, the backup
   * stays listed with the copies that are left, and the delete fails (retryable).
   */
  async deleteBackup(manifest: BackupManifest): Promise<void> {
    let remaining = [...manifest.copies];
    for (const copy of manifest.copies) {
      const destination = this.destination(copy.destination);
      if (destination === this.catalog) continue;
      if (!destination) {
        this.logger.warn(
          { backupId: manifest.id, destination: copy.destination },
          'copy left in a destination that is no longer configured',
        );
        continue;
      }
      try {
        await destination.deleteManifest(manifest.id);
        await destination.removeArtifact(manifest.filename);
        remaining = remaining.filter((other) => other !== copy);
      } catch (error) {
        if (remaining.length < manifest.copies.length) {
          await this.catalog.writeManifest({ ...manifest, copies: remaining });
        }
        throw new AppError(
          'STORAGE_ERROR',
          `could not delete the copy in ${copy.destination}: ${toAppError(error).message}`,
          { retryable: true, cause: error },
        );
      }
    }
    await this.catalog.deleteBackup(manifest);
  }

  /**
   * Leftovers of interrupted writes, in the catalog directory and every destination. A
   * destination that cannot be reached is reported and skipped.
   */
  async sweepLeftovers(): Promise<string[]> {
    const removed = await this.catalog.sweepLeftovers();
    for (const destination of this.destinations) {
      if (destination === this.catalog) continue;
      try {
        removed.push(
          ...(await destination.sweepLeftovers()).map((name) => `${destination.name}:${name}`),
        );
      } catch (error) {
        this.logger.warn(
          { destination: destination.name, err: toAppError(error).message },
          'could not sweep a destination',
        );
      }
    }
    return removed;
  }

  /**
   * Once per catalog key, here and beside each remote copy: signs again the manifests signed
   * with a key that is still accepted but no longer signs (a rotated encryption key, a new
   * CATALOG_KEY), so that every backup stays listed. The first time any key is in force, it
   * also signs the manifests without an HMAC that the catalog already held: a deployment that
   * turns encryption or CATALOG_KEY on keeps the backups it had. The local catalog is this
   * deployment's own disk and is trusted that once; a bucket never is. From then on an unsigned
   * manifest is refused wherever it turns up. Call only while no job changes the catalog.
   */
  async signCatalog(): Promise<{ signed: string[]; refused: InvalidManifest[] } | undefined> {
    const { signing } = this.catalog.catalogKeys;
    if (!signing) return undefined;
    const keyId = catalogKeyId(signing);
    const previous = await this.catalog.signedWith();
    if (previous === keyId) return undefined;
    await this.catalog.ensureDir();
    const { manifests, refused } = await this.catalog.manifestsToSign(previous === undefined);
    for (const manifest of manifests) {
      for (const copy of manifest.copies) {
        const destination = this.destination(copy.destination);
        if (!destination || destination === this.catalog) continue;
        await destination.writeManifest(manifest).catch((error: unknown) => {
          this.logger.warn(
            {
              backupId: manifest.id,
              destination: destination.name,
              err: toAppError(error).message,
            },
            'could not sign the manifest beside a remote copy; a catalog rebuild will not bring that copy back',
          );
        });
      }
      await this.catalog.writeManifest(manifest);
    }
    await this.catalog.markSignedWith(keyId);
    if (refused.length > 0) {
      this.logger.warn({ refused }, 'catalog: manifests left unsigned, they are not listed');
    }
    this.logger.info(
      { signed: manifests.length, catalogKeyId: keyId },
      'catalog: manifests signed',
    );
    return { signed: manifests.map((manifest) => manifest.id), refused };
  }

  /**
   * Adds to the catalog every backup whose manifest a remote destination holds and the catalog
   * does not (after the local disk was lost, or on a new machine). A local copy listed in such a
   * manifest is kept only if its artifact is really there. `dryRun`: reads all the same and
   * returns what it would add, writing nothing (not even the catalog directory).
   */
  async rebuildCatalog(
    options: { dryRun?: boolean } = {},
  ): Promise<{ added: string[]; unreachable: string[] }> {
    const dryRun = options.dryRun === true;
    if (!dryRun) await this.catalog.ensureDir();
    const known = new Set((await this.catalog.listManifests()).manifests.map((m) => m.id));
    const added: string[] = [];
    const unreachable: string[] = [];
    for (const destination of this.destinations) {
      if (destination === this.catalog) continue;
      let manifests: BackupManifest[];
      try {
        manifests = (await destination.listManifests()).manifests;
      } catch (error) {
        unreachable.push(destination.name);
        this.logger.warn(
          { destination: destination.name, err: toAppError(error).message },
          'could not read the manifests of a destination',
        );
        continue;
      }
      for (const manifest of manifests) {
        if (known.has(manifest.id)) continue;
        const copies: BackupCopy[] = [];
        for (const copy of manifest.copies) {
          if (copy.destination === 'local') {
            const stat = await this.catalog.statArtifact(manifest.filename);
            if (stat?.size !== manifest.size) continue;
          }
          copies.push(copy);
        }
        if (copies.length === 0) continue;
        if (!dryRun) await this.catalog.writeManifest({ ...manifest, copies });
        known.add(manifest.id);
        added.push(manifest.id);
      }
    }
    if (added.length > 0 && !dryRun) {
      this.logger.info({ added: added.length }, 'catalog: backups added back from destinations');
    }
    return { added, unreachable };
  }
}
