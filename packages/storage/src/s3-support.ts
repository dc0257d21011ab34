import type { S3DestinationSettings } from '@pgkeep/core';

const MiB = 1024 * 1024;

/** Built by core's `loadConfig` (`S3_<NAME>_*`), which holds the defaults. */
export type S3DestinationConfig = S3DestinationSettings;

/**
 * Part size for a multipart upload of an artifact expected to weigh `sizeHint`. S3 allows at most
 * 10,000 parts of 5 MiB to 5 GiB, and a dump's size is only an estimate: parts sized for twice
 * the estimate keep a dump up to twice as large as expected under the part limit.
 */
export function partSizeFor(sizeHint: number | undefined, minBytes: number): number {
  const forHint = sizeHint === undefined ? 0 : Math.ceil((sizeHint * 2) / 10_000);
  return Math.min(Math.max(minBytes, forHint, 5 * MiB), 5 * 1024 * MiB);
}

/** `''` stays the bucket's root; anything else becomes `folder/`, without a leading slash. */
export function normalizePrefix(prefix: string): string {
  const trimmed = prefix.replace(/^\/+/, '');
  return trimmed === '' || trimmed.endsWith('/') ? trimmed : `${trimmed}/`;
}

/** The S3 error's name, HTTP status and message: never a credential or a signed URL. */
export function describeS3Error(error: unknown): string {
  if (!(error instanceof Error)) return String(error).slice(0, 300);
  const code = (error as NodeJS.ErrnoException).code;
  const name = error.name === 'Error' && code ? code : error.name;
  const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  return `${name}${status ? ` (HTTP ${status})` : ''}: ${error.message.slice(0, 300)}`;
}

export function httpStatusOf(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata
    ?.httpStatusCode;
}

export function isMissingKey(error: unknown): boolean {
  const name = (error as Error | undefined)?.name;
  return name === 'NoSuchKey' || name === 'NotFound' || httpStatusOf(error) === 404;
}

/** Runs `work` on every item, at most `limit` at a time, results in the items' order. */
export async function mapBounded<T, R>(items: T[], limit: number, work: (item: T) => Promise<R>) {
  const results: R[] = [];
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
