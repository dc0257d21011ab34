import { createHash, randomBytes } from 'node:crypto';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  paginateListObjectsV2,
  S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
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
import {
  describeS3Error,
  httpStatusOf,
  isMissingKey,
  mapBounded,
  normalizePrefix,
  partSizeFor,
  type S3DestinationConfig,
} from './s3-support.js';

export type { S3DestinationConfig } from './s3-support.js';
export { describeS3Error, normalizePrefix, partSizeFor } from './s3-support.js';

// The SDK warns on Node 20 at every client start; its versions are pinned by package-lock.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const MANIFEST_SUFFIX = '.manifest.json';
const MANIFEST_FETCH_CONCURRENCY = 8;
// What pgkeep's own artifacts carry and a foreign `backup-<timestamp>.sql` does not.
const RANDOM_ID_SUFFIX = /-[0-9a-f]{12}$/;
// The commands an artifact write consists of: their failure is the copy's failure.
const WRITE_COMMANDS = new Set([
  'PutObjectCommand',
  'CreateMultipartUploadCommand',
  'UploadPartCommand',
  'CompleteMultipartUploadCommand',
]);

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
    const checksums = config.checksums === 'when_required' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED';
    this.client = new S3Client({
      region: config.region,
      endpoint: config.endpoint,
      forcePathStyle: config.forcePathStyle,
      credentials:
        config.accessKeyId && config.secretAccessKey
          ? {
              accessKeyId: config.accessKeyId,
              secretAccessKey: config.secretAccessKey,
              sessionToken: config.sessionToken,
            }
          : undefined,
      requestChecksumCalculation: checksums,
      responseChecksumValidation: checksums,
      maxAttempts: config.maxAttempts,
    });
    // lib-storage keeps uploading the other parts after one failed and reports the failure only
    // at the end (or the AbortMultipartUpload error instead, where that fails): this sees the
    // first failure, after the SDK's retries, so that the write stops at once and says why.
    this.client.middlewareStack.add(
      (next, context) => async (args) => {
        try {
          return await next(args);
        } catch (error) {
          const key = 'Key' in args.input ? args.input.Key : undefined;
          if (typeof key === 'string' && WRITE_COMMANDS.has(context.commandName ?? '')) {
            this.writeFailures.get(key)?.(error);
          }
          throw error;
        }
      },
      { step: 'initialize', name: 'pgkeepWriteFailure' },
    );
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
   * Streams `source` into one multipart upload, holding at most about partSize × (queueSize + 1)
   * bytes, with sha256 and size computed on exactly the bytes uploaded. On a failure or an abort
   * it waits for the upload's requests to end, so that nothing is left to appear later.
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
    const hash = createHash('sha256');
    let size = 0;
    const body = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        hash.update(chunk);
        size += chunk.length;
        onBytes?.(size);
        callback(null, chunk);
      },
    });
    // Ending the body rather than `upload.abort()`: abort() settles `done()` at once while parts
    // and even the completing request go on, so an object could appear after the rejection.
    // An error in the body makes the upload stop and abort its multipart upload itself.
    let writeError: unknown;
    this.writeFailures.set(key, (error) => {
      writeError ??= error;
      body.destroy(error instanceof Error ? error : new Error(String(error)));
    });
    const onAbort = () => body.destroy(new Error('aborted'));
    signal?.addEventListener('abort', onAbort, { once: true });
    let sourceError: unknown;
    const feeding = pipeline(source, body).catch((error: unknown) => {
      sourceError = error;
    });
    const upload = new Upload({
      client: this.client,
      params: {
        Bucket: this.bucket,
        Key: key,
        Body: body,
        ContentType: 'application/octet-stream',
      },
      partSize: partSizeFor(sizeHint, this.config.partSizeMinBytes),
      queueSize: this.config.queueSize,
      leavePartsOnError: false,
    });
    try {
      await upload.done();
    } catch (error) {
      // Stops the source if the upload gave up first; a no-op if the source failed first.
      const ended = new Error('the upload ended');
      body.destroy(ended);
      await feeding;
      if (signal?.aborted) throw this.aborted(signal);
      if (writeError !== undefined)
        throw this.failure(`writing ${filename}`, writeError, 'COPY_FAILED');
      // The source's own failure (pg_dump, compression) says more than the upload's.
      if (sourceError !== undefined && sourceError !== ended) throw sourceError;
      throw this.failure(`writing ${filename}`, error, 'COPY_FAILED');
    } finally {
      signal?.removeEventListener('abort', onAbort);
      this.writeFailures.delete(key);
    }
    await feeding;
    if (signal?.aborted) {
      // Aborted while the last request was on its way: the caller never gets this object.
      await this.removeArtifact(filename);
      throw this.aborted(signal);
    }
    return {
      filename,
      size,
      sha256: hash.digest('hex'),
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
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    try {
      do {
        const page = await this.client.send(
          new ListMultipartUploadsCommand({
            Bucket: this.bucket,
            Prefix: this.prefix,
            Delimiter: '/',
            KeyMarker: keyMarker,
            UploadIdMarker: uploadIdMarker,
          }),
        );
        for (const upload of page.Uploads ?? []) {
          const name = upload.Key?.slice(this.prefix.length) ?? '';
          if (name.includes('/') || this.pgkeepArtifactId(name) === undefined) continue;
          await this.client.send(
            new AbortMultipartUploadCommand({
              Bucket: this.bucket,
              Key: upload.Key,
              UploadId: upload.UploadId,
            }),
          );
          aborted.push(name);
        }
        const more = page.IsTruncated === true && page.NextKeyMarker !== undefined;
        keyMarker = more ? page.NextKeyMarker : undefined;
        uploadIdMarker = more ? page.NextUploadIdMarker : undefined;
      } while (keyMarker !== undefined);
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
