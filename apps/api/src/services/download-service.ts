import type { Readable } from 'node:stream';
import { AppError, type BackupManifest } from '@pgkeep/core';
import type { ByteRange } from '@pgkeep/storage';
import type { TargetServices } from './api-services.js';

export interface Download {
  stream: Readable;
  /** The copy served. */
  destination: string;
  /** The part served, when a range was asked for and can be served. */
  range: ByteRange | null;
}

/**
 * `Range: bytes=a-b`, `bytes=a-` or `bytes=-n` (one range; several are served as the whole
 * file, which RFC 9110 allows). Undefined: no usable range header, serve everything.
 * Throws RANGE_NOT_SATISFIABLE for a range outside the file.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | undefined {
  if (header === undefined) return undefined;
  const match = /^bytes=(\d{0,15})-(\d{0,15})$/.exec(header.trim());
  if (!match) return undefined;
  const [, first = '', last = ''] = match;
  if (first === '' && last === '') return undefined;
  let start: number;
  let end: number;
  if (first === '') {
    // The last n bytes.
    const suffix = Number(last);
    if (suffix === 0) throw new AppError('RANGE_NOT_SATISFIABLE', 'the range is empty');
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(first);
    end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  }
  if (start >= size || start > end) {
    throw new AppError('RANGE_NOT_SATISFIABLE', `the range is outside the ${size}-byte artifact`);
  }
  return { start, end };
}

/**
 * The stored bytes of a backup (encrypted ones stay encrypted), from the first copy that is
 * there at its full size, local first.
 */
export async function openDownload(
  services: Pick<TargetServices, 'storage'>,
  manifest: BackupManifest,
  rangeHeader: string | undefined,
): Promise<Download> {
  const range = parseRange(rangeHeader, manifest.size) ?? null;
  const problems: string[] = [];
  for (const { destination } of services.storage.readOrder(manifest)) {
    try {
      const stat = await destination.statArtifact(manifest.filename);
      if (stat?.size !== manifest.size) {
        problems.push(`${destination.name}: ${stat ? `${stat.size} bytes` : 'missing'}`);
        continue;
      }
      const stream = await destination.openArtifact(manifest.filename, range ?? undefined);
      return { stream, destination: destination.name, range };
    } catch (error) {
      problems.push(`${destination.name}: ${(error as Error).message}`);
    }
  }
  throw new AppError(
    'ARTIFACT_MISSING',
    `no copy of backup ${manifest.id} can be read${problems.length > 0 ? ` (${problems.join('; ')})` : ''}`,
  );
}
