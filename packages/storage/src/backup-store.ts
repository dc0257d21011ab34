import type { Readable } from 'node:stream';
import {
  AppError,
  type BackupCopy,
  type BackupManifest,
  type Logger,
  toAppError,
} from '@pgkeep/core';
import { rebuildCatalog } from './catalog-rebuild.js';
import { signCatalog } from './catalog-signing.js';
import { copyFromLocal } from './copy-from-local.js';
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
          ? await copyFromLocal(local, outcome.destination, filename, first, {
              signal: options.signal,
              attempts: this.options.copyAttempts,
              retryDelayMs: this.options.copyRetryDelayMs,
              logger: this.logger,
            })
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

  /** Signs the catalog's manifests with a new catalog key, once (see signCatalog). */
  signCatalog(): Promise<{ signed: string[]; refused: InvalidManifest[] } | undefined> {
    return signCatalog(this.catalog, this.destinations, this.logger);
  }

  /**
   * Adds to the catalog every backup whose manifest a remote destination holds and the catalog
   * does not (see rebuildCatalog); `dryRun` writes nothing.
   */
  rebuildCatalog(
    options: { dryRun?: boolean } = {},
  ): Promise<{ added: string[]; unreachable: string[] }> {
    return rebuildCatalog(this.catalog, this.destinations, this.logger, options);
  }
}
