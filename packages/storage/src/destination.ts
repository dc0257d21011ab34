import type { Readable } from 'node:stream';
import type { BackupManifest } from '@pgkeep/core';

export interface InvalidManifest {
  file: string;
  reason: string;
}

/** An artifact that has been written in full but is not yet visible under its final name. */
export interface StagedArtifact {
  filename: string;
  /** Bytes stored, and their sha256, computed on the bytes this destination was given. */
  size: number;
  sha256: string;
  /** Makes the artifact visible under its final name. */
  commit(): Promise<void>;
  /** Removes whatever this write left (staged or committed). Never throws for a missing file. */
  discard(): Promise<void>;
}

export interface WriteOptions {
  signal?: AbortSignal | undefined;
  /** What the artifact is expected to weigh, for sizing upload parts; not a limit. */
  sizeHint?: number | undefined;
  /** Called with the bytes written so far. */
  onBytes?: ((bytesWritten: number) => void) | undefined;
}

export interface ByteRange {
  /** First byte, inclusive. */
  start: number;
  /** Last byte, inclusive. */
  end: number;
}

/**
 * One place where copies of backups live: the local backup directory or an S3-compatible
 * bucket. A destination holds, for each backup, the artifact and a copy of its manifest
 * beside it, so that the catalog can be rebuilt from any destination alone.
 */
export interface Destination {
  /** `local`, or the name the configuration gives an S3 destination. */
  readonly name: string;
  readonly kind: 'local' | 's3';
  /** A backup is complete only when every required destination holds its copy. */
  readonly required: boolean;
  /** Where a file lives, for manifests and logs: a path or `s3://bucket/key`. No credentials. */
  locationOf(filename: string): string;
  /**
   * Streams `source` into a new artifact. Resolves once every byte is stored durably but not
   * yet visible (local: fsynced `.partial`); rejects, leaving nothing behind, on any failure.
   * A destination where staging is impossible (S3) makes the object visible here and
   * `discard` deletes it.
   */
  writeArtifact(
    filename: string,
    source: Readable,
    options?: WriteOptions,
  ): Promise<StagedArtifact>;
  /** Reads an artifact, or a byte range of it. Rejects with `ARTIFACT_MISSING` if absent. */
  openArtifact(filename: string, range?: ByteRange): Promise<Readable>;
  /** Size of an artifact as stored now, or undefined if it is absent. */
  statArtifact(filename: string): Promise<{ size: number } | undefined>;
  removeArtifact(filename: string): Promise<void>;
  /** Written after the artifact, atomically: a reader sees the whole manifest or none. */
  writeManifest(manifest: BackupManifest): Promise<void>;
  /** The manifest of one backup, validated; undefined if there is none. */
  readManifest(id: string): Promise<BackupManifest | undefined>;
  /** Every valid manifest, newest first; invalid ones reported, never listed. */
  listManifests(): Promise<{ manifests: BackupManifest[]; invalid: InvalidManifest[] }>;
  deleteManifest(id: string): Promise<void>;
  /**
   * Removes what interrupted writes of pgkeep's own left (partial files, artifacts named with a
   * pgkeep id that have no manifest). Only while no backup can be writing.
   */
  sweepLeftovers(): Promise<string[]>;
  /** Health: can this process write and remove an object here? */
  checkWritable(): Promise<void>;
}
