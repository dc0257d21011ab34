import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  paginateListObjectsV2,
  type S3Client,
} from '@aws-sdk/client-s3';
import {
  AppError,
  artifactIdOf,
  type BackupManifest,
  type CatalogKeys,
  type ErrorCode,
  isBackupId,
  type Logger,
  manifestFilename,
  manifestSchema,
  manifestText,
  newestFirst,
  parseManifestText,
  unsignedCatalog,
} from '@pgkeep/core';
import type {
  ByteRange,
  Destination,
  InvalidManifest,
  StagedArtifact,
  WriteOptions,
} from './destination.js';
import { createS3Client } from './s3-client.js';
import { abortIncompleteUploads } from './s3-multipart-uploads.js';
import {
  describeS3Error,
  httpStatusOf,
  isMissingKey,
  mapBounded,
  normalizePrefix,
  partSizeFor,
  type S3DestinationConfig,
} from './s3-support.js';
import { uploadStream } from './s3-upload.js';

export type { S3DestinationConfig } from './s3-support.js';
export { describeS3Error, normalizePrefix, partSizeFor } from './s3-support.js';

const MANIFEST_SUFFIX = '.manifest.json';
const MANIFEST_FETCH_CONCURRENCY = 8;
// What pgkeep's own artifacts carry and a foreign `backup-<timestamp>.sql` does not.
const RANDOM_ID_SUFFIX = /-[0-9a-f]{12}$/;

/**
 * Copies of backups in an S3-compatible bucket, under a prefix: the artifact and its manifest
 * side by side, as in the local directory. S3 has no rename, so an artifact is visible once its
 * upload completes; a backup still exists only once its manifest does, and the sweep removes
 * artifacts that never got one.
 */
export class S3Destination implements Destination {
  readonly kind = 's3';
  readonly name: string;
  readonly required: boolean;
  readonly bucket: string;
  readonly prefix: string;
  private readonly client: S3Client;
  /** Keys being written, each with what to do when one of its write requests fails for good. */
  private readonly writeFailures = new Map<string, (error: unknown) => void>();

  constructor(
    private readonly config: S3DestinationConfig,
    private readonly logger: Logger,
    /** Manifests written here are signed with these, and read back only if they verify. */
    private readonly catalogKeys: CatalogKeys = unsignedCatalog,
  ) {
    this.name = config.name;
    this.required = config.required;
    this.bucket = config.bucket;
    this.prefix = normalizePrefix(config.prefix);
    this.client = createS3Client(config, (key, error) => this.writeFailures.get(key)?.(error));
  }

  /** Closes the client's idle connections. */
  close(): void {
    this.client.destroy();
  }

  locationOf(filename: string): string {
    return `s3://${this.bucket}/${this.prefix}${filename}`;
  }

  /** Keys are only ever built from plain names, never from something with a slash in it. */
  private keyOf(filename: string): string {
    if (filename === '' || /[/\\]/.test(filename) || filename.startsWith('.')) {
      throw new AppError('STORAGE_ERROR', 'refused an unsafe object name');
    }
    return `${this.prefix}${filename}`;
  }

  private failure(operation: string, error: unknown, code: ErrorCode = 'STORAGE_ERROR') {
    const status = httpStatusOf(error);
    return new AppError(
      code,
      `S3 destination ${this.name}: ${operation} failed: ${describeS3Error(error)}`,
      // Unreachable, throttled or failing servers may recover; a refusal (4xx) will not.
      { retryable: status === undefined || status >= 500 || status === 429, cause: error },
    );
  }

  private aborted(signal: AbortSignal): AppError {
    return new AppError('JOB_ABORTED', `the write to ${this.name} was aborted`, {
      retryable: true,
      cause: signal.reason,
    });
  }

  /**
   * Streams `source` into one multipart upload (see uploadStream). Aborted once the upload has
   * completed: the object is removed, and the caller never gets it.
   */
  async writeArtifact(
    filename: string,
    source: Readable,
    { signal, sizeHint, onBytes }: WriteOptions = {},
  ): Promise<StagedArtifact> {
    const key = this.keyOf(filename);
    if (this.writeFailures.has(key)) {
      throw new AppError('STORAGE_ERROR', `${filename} is already being written to ${this.name}`);
    }
    if (signal?.aborted) {
      source.destroy();
      throw this.aborted(signal);
    }
    const { size, sha256 } = await uploadStream(
      {
        client: this.client,
        bucket: this.bucket,
        key,
        partSize: partSizeFor(sizeHint, this.config.partSizeMinBytes),
        queueSize: this.config.queueSize,
      },
      source,
      {
        signal,
        onBytes,
        watchWriteFailures: (listener) => {
          this.writeFailures.set(key, listener);
          return () => this.writeFailures.delete(key);
        },
        aborted: (abortSignal) => this.aborted(abortSignal),
        failed: (error) => this.failure(`writing ${filename}`, error, 'COPY_FAILED'),
      },
    );
    if (signal?.aborted) {
      // Aborted while the last request was on its way: the caller never gets this object.
      await this.removeArtifact(filename);
      throw this.aborted(signal);
    }
    return {
      filename,
      size,
      sha256,
      // Visible since the upload completed: S3 has nothing to rename.
      commit: async () => {},
      discard: () => this.removeArtifact(filename),
    };
  }

  async openArtifact(filename: string, range?: ByteRange): Promise<Readable> {
    const key = this.keyOf(filename);
    if (range && !(Number.isInteger(range.start) && range.start >= 0 && range.end >= range.start)) {
      throw new AppError('RANGE_NOT_SATISFIABLE', 'invalid byte range');
    }
    try {
      const response = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Range: range ? `bytes=${range.start}-${range.end}` : undefined,
        }),
      );
      if (!(response.Body instanceof Readable)) throw new Error('the body is not a stream');
      return response.Body;
    } catch (error) {
      if ((error as Error).name === 'NoSuchBucket')
        throw this.failure(`reading ${filename}`, error);
      if (isMissingKey(error)) {
        throw new AppError('ARTIFACT_MISSING', `${filename} is missing from ${this.name}`);
      }
      if (httpStatusOf(error) === 416) {
        throw new AppError('RANGE_NOT_SATISFIABLE', `the range is outside ${filename}`);
      }
      throw this.failure(`reading ${filename}`, error);
    }
  }

  async statArtifact(filename: string): Promise<{ size: number } | undefined> {
    const key = this.keyOf(filename);
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { size: head.ContentLength ?? 0 };
    } catch (error) {
      if (isMissingKey(error)) return undefined;
      throw this.failure(`inspecting ${filename}`, error);
    }
  }

  /** Idempotent: S3 answers a delete of a missing key with success. */
  async removeArtifact(filename: string): Promise<void> {
    await this.deleteKey(this.keyOf(filename), `removing ${filename}`);
  }

  private async deleteKey(key: string, operation: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (error) {
      throw this.failure(operation, error);
    }
  }

  /** One PutObject: S3 makes an object visible whole or not at all. */
  async writeManifest(manifest: BackupManifest): Promise<void> {
    const valid = manifestSchema.parse(manifest);
    const filename = manifestFilename(valid.id);
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.keyOf(filename),
          Body: manifestText(valid, this.catalogKeys),
          ContentType: 'application/json',
        }),
      );
    } catch (error) {
      throw this.failure(`writing ${filename}`, error);
    }
  }

  /** An object's text, or undefined if it is absent. */
  private async readText(key: string, operation: string): Promise<string | undefined> {
    try {
      const response = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: key }),
      );
      return await response.Body?.transformToString('utf8');
    } catch (error) {
      if ((error as Error).name !== 'NoSuchBucket' && isMissingKey(error)) return undefined;
      throw this.failure(operation, error);
    }
  }

  async readManifest(id: string): Promise<BackupManifest | undefined> {
    if (!isBackupId(id)) throw new AppError('INVALID_BACKUP_ID', 'invalid backup id');
    const filename = manifestFilename(id);
    const text = await this.readText(this.keyOf(filename), `reading ${filename}`);
    if (text === undefined) return undefined;
    const parsed = parseManifestText(text, id, this.catalogKeys);
    if (!parsed.ok) {
      throw new AppError(
        'MANIFEST_INVALID',
        `the manifest of backup ${id} on ${this.name} is not valid: ${parsed.reason}`,
      );
    }
    return parsed.manifest;
  }

  /** Names of the objects directly under the prefix; deeper "folders" are not pgkeep's. */
  private async listNames(): Promise<string[]> {
    const names: string[] = [];
    try {
      const pages = paginateListObjectsV2(
        { client: this.client },
        { Bucket: this.bucket, Prefix: this.prefix, Delimiter: '/' },
      );
      for await (const page of pages) {
        for (const object of page.Contents ?? []) {
          const name = object.Key?.slice(this.prefix.length);
          if (name && !name.includes('/')) names.push(name);
        }
      }
    } catch (error) {
      throw this.failure('listing objects', error);
    }
    return names;
  }

  async listManifests(): Promise<{ manifests: BackupManifest[]; invalid: InvalidManifest[] }> {
    const names = (await this.listNames()).filter(
      (name) => name.startsWith('backup-') && name.endsWith(MANIFEST_SUFFIX),
    );
    const manifests: BackupManifest[] = [];
    const invalid: InvalidManifest[] = [];
    const results = await mapBounded(names, MANIFEST_FETCH_CONCURRENCY, async (name) => {
      const id = name.slice('backup-'.length, -MANIFEST_SUFFIX.length);
      if (!isBackupId(id)) return { name, reason: 'file name is not a backup id' };
      const text = await this.readText(this.keyOf(name), `reading ${name}`);
      // Deleted between the listing and the read: gone, which is what a list should say.
      if (text === undefined) return undefined;
      const parsed = parseManifestText(text, id, this.catalogKeys);
      return parsed.ok ? parsed.manifest : { name, reason: parsed.reason };
    });
    for (const result of results) {
      if (result === undefined) continue;
      if ('reason' in result) invalid.push({ file: result.name, reason: result.reason });
      else manifests.push(result);
    }
    if (invalid.length > 0) {
      this.logger.warn({ destination: this.name, invalid }, 'manifests skipped: not valid');
    }
    manifests.sort(newestFirst);
    return { manifests, invalid };
  }

  async deleteManifest(id: string): Promise<void> {
    if (!isBackupId(id)) throw new AppError('INVALID_BACKUP_ID', 'invalid backup id');
    const filename = manifestFilename(id);
    await this.deleteKey(this.keyOf(filename), `removing ${filename}`);
  }

  /**
   * Removes what interrupted writes of pgkeep's own left: artifacts named with a pgkeep id
   * (which carries a random suffix) that have no manifest, and incomplete multipart uploads of
   * such names. Anything else under the prefix is never touched. Only while no backup can be
   * writing.
   */
  async sweepLeftovers(): Promise<string[]> {
    const names = await this.listNames();
    const present = new Set(names);
    const removed = new Set<string>();
    for (const name of names) {
      const id = this.pgkeepArtifactId(name);
      if (id !== undefined && !present.has(manifestFilename(id))) {
        await this.removeArtifact(name);
        removed.add(name);
      }
    }
    for (const name of await this.abortIncompleteUploads()) removed.add(name);
    if (removed.size > 0) {
      this.logger.info(
        { destination: this.name, removed: [...removed] },
        'removed leftovers of unfinished backups',
      );
    }
    return [...removed];
  }

  private pgkeepArtifactId(name: string): string | undefined {
    const id = artifactIdOf(name);
    return id !== undefined && isBackupId(id) && RANDOM_ID_SUFFIX.test(id) ? id : undefined;
  }

  /** Incomplete uploads hold storage (and cost) invisibly until aborted. */
  private async abortIncompleteUploads(): Promise<string[]> {
    const aborted: string[] = [];
    try {
      await abortIncompleteUploads(
        { client: this.client, bucket: this.bucket, prefix: this.prefix },
        (name) => this.pgkeepArtifactId(name) !== undefined,
        (name) => aborted.push(name),
      );
    } catch (error) {
      // Some S3-compatible stores (s3rver among them) do not list multipart uploads.
      if ((error as Error).name === 'NotImplemented' || httpStatusOf(error) === 501) {
        this.logger.debug({ destination: this.name }, 'multipart uploads cannot be listed here');
        return aborted;
      }
      throw this.failure('aborting incomplete uploads', error);
    }
    return aborted;
  }

  /** Health: put then delete a small object under the prefix. */
  async checkWritable(): Promise<void> {
    const key = `${this.prefix}.write-check-${randomBytes(4).toString('hex')}`;
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: 'ok' }));
    } catch (error) {
      throw this.failure('writing a probe object', error);
    }
    await this.deleteKey(key, 'removing a probe object');
  }
}
