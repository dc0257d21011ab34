import {
  AbortMultipartUploadCommand,
  ListMultipartUploadsCommand,
  type S3Client,
} from '@aws-sdk/client-s3';

/**
 * Aborts the incomplete multipart uploads directly under `prefix` whose names `isOurs` accepts,
 * telling `onAborted` each name as it goes. Errors (a store that cannot list multipart uploads
 * among them) are thrown as the SDK gave them.
 */
export async function abortIncompleteUploads(
  { client, bucket, prefix }: { client: S3Client; bucket: string; prefix: string },
  isOurs: (name: string) => boolean,
  onAborted: (name: string) => void,
): Promise<void> {
  let keyMarker: string | undefined;
  let uploadIdMarker: string | undefined;
  do {
    const page = await client.send(
      new ListMultipartUploadsCommand({
        Bucket: bucket,
        Prefix: prefix,
        Delimiter: '/',
        KeyMarker: keyMarker,
        UploadIdMarker: uploadIdMarker,
      }),
    );
    for (const upload of page.Uploads ?? []) {
      const name = upload.Key?.slice(prefix.length) ?? '';
      if (name.includes('/') || !isOurs(name)) continue;
      await client.send(
        new AbortMultipartUploadCommand({
          Bucket: bucket,
          Key: upload.Key,
          UploadId: upload.UploadId,
        }),
      );
      onAborted(name);
    }
    const more = page.IsTruncated === true && page.NextKeyMarker !== undefined;
    keyMarker = more ? page.NextKeyMarker : undefined;
    uploadIdMarker = more ? page.NextUploadIdMarker : undefined;
  } while (keyMarker !== undefined);
}
