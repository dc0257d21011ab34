import { createHash } from 'node:crypto';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';

export interface UploadTarget {
  client: S3Client;
  bucket: string;
  key: string;
  partSize: number;
  queueSize: number;
}

export interface UploadOptions {
  signal?: AbortSignal | undefined;
  onBytes?: ((bytes: number) => void) | undefined;
  /**
   * Registers what to do when one of the upload's requests fails for good (the client's
   * middleware hears of it first); returns the way to unregister it.
   */
  watchWriteFailures: (listener: (error: unknown) => void) => () => void;
  /** The error of an aborted write, and of a failed one. */
  aborted: (signal: AbortSignal) => Error;
  failed: (error: unknown) => Error;
}

/**
 * Streams `source` into one multipart upload, holding at most about partSize × (queueSize + 1)
 * bytes, with sha256 and size computed on exactly the bytes uploaded. On a failure or an abort
 * it waits for the upload's requests to end, so that nothing is left to appear later.
 */
export async function uploadStream(
  { client, bucket, key, partSize, queueSize }: UploadTarget,
  source: Readable,
  { signal, onBytes, watchWriteFailures, aborted, failed }: UploadOptions,
): Promise<{ size: number; sha256: string }> {
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
  const unwatch = watchWriteFailures((error) => {
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
    client,
    params: {
      Bucket: bucket,
      Key: key,
      Body: body,
      ContentType: 'application/octet-stream',
    },
    partSize,
    queueSize,
    leavePartsOnError: false,
  });
  try {
    await upload.done();
  } catch (error) {
    // Stops the source if the upload gave up first; a no-op if the source failed first.
    const ended = new Error('the upload ended');
    body.destroy(ended);
    await feeding;
    if (signal?.aborted) throw aborted(signal);
    if (writeError !== undefined) throw failed(writeError);
    // The source's own failure (pg_dump, compression) says more than the upload's.
    if (sourceError !== undefined && sourceError !== ended) throw sourceError;
    throw failed(error);
  } finally {
    signal?.removeEventListener('abort', onAbort);
    unwatch();
  }
  await feeding;
  return { size, sha256: hash.digest('hex') };
}
