import { S3Client } from '@aws-sdk/client-s3';
import type { S3DestinationConfig } from './s3-support.js';

// The SDK warns on Node 20 at every client start; its versions are pinned by package-lock.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

// The commands an artifact write consists of: their failure is the copy's failure.
const WRITE_COMMANDS = new Set([
  'PutObjectCommand',
  'CreateMultipartUploadCommand',
  'UploadPartCommand',
  'CompleteMultipartUploadCommand',
]);

/**
 * The SDK client of one S3 destination. `onWriteFailure` hears of each failed request of an
 * artifact write (after the SDK's own retries), by the object's key.
 */
export function createS3Client(
  config: S3DestinationConfig,
  onWriteFailure: (key: string, error: unknown) => void,
): S3Client {
  const checksums = config.checksums === 'when_required' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED';
  const client = new S3Client({
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
  client.middlewareStack.add(
    (next, context) => async (args) => {
      try {
        return await next(args);
      } catch (error) {
        const key = 'Key' in args.input ? args.input.Key : undefined;
        if (typeof key === 'string' && WRITE_COMMANDS.has(context.commandName ?? '')) {
          onWriteFailure(key, error);
        }
        throw error;
      }
    },
    { step: 'initialize', name: 'pgkeepWriteFailure' },
  );
  return client;
}
