import {
  createCipheriv,
  createDecipheriv,
  hkdfSync,
  randomBytes,
  type ScryptOptions,
  scrypt,
} from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { AppError, encryptionAlgorithm, toAppError } from '@pgkeep/core';
import { ByteQueue } from './byte-queue.js';

/*
 * Format aes-256-gcm-stream-v1. A 53-byte header (magic+version, kdf, chunkBytes, key id, salt),
 * plaintext but authenticated as the AAD of every chunk, then chunks of `chunkBytes` plaintext
 * bytes (the last one 0..chunkBytes), each stored as ciphertext || 16-byte tag. The nonce is the
 * chunk counter plus a final flag, so reordering, duplicating, truncating (even at a chunk
 * boundary) or appending makes a tag fail. Every file gets a fresh salt, hence a fresh file key,
 * which is what makes counter nonces safe.
 */
const MAGIC = Buffer.from('PGKEEPE\x01', 'latin1');
const HEADER_BYTES = 53;
const TAG_BYTES = 16;
export const KEY_BYTES = 32;
export const KDF_RAW_KEY = 1;
export const KDF_PASSPHRASE = 2;
export const MIN_CHUNK_BYTES = 1024;
export const MAX_CHUNK_BYTES = 16 * 1024 * 1024;
const HKDF_INFO = `pgkeep/${encryptionAlgorithm}`;
const SCRYPT_OPTIONS: ScryptOptions = { N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };

const TAMPERED_MESSAGE =
  'cannot decrypt the artifact: wrong key, or the file was changed, truncated or reordered';

/** A key as the ring holds it: `secret` is the raw key (kdf 1) or the passphrase's UTF-8 bytes. */
export interface RingKey {
  keyId: string;
  kdf: typeof KDF_RAW_KEY | typeof KDF_PASSPHRASE;
  secret: Buffer;
  /** The key manifests are authenticated with when no CATALOG_KEY is set (HKDF, own label). */
  catalogKey: Buffer;
}

export function scryptKey(secret: Buffer, salt: Buffer | string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(secret, salt, KEY_BYTES, SCRYPT_OPTIONS, (error, derived) =>
      error ? reject(error) : resolve(derived),
    );
  });
}

/** A Transform from plaintext to an encrypted artifact with `key`: the header, then chunks. */
export function encryptTransform(key: RingKey, chunkBytes: number): Transform {
  const header = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(header, 0);
  header.writeUInt8(key.kdf, 8);
  header.writeUInt32BE(chunkBytes, 9);
  header.write(key.keyId, 13, 'hex');
  randomBytes(32).copy(header, 21);
  return new EncryptTransform(header, chunkBytes, deriveFileKey(key, header));
}

/** The per-file key: HKDF for a raw key (cheap, sync), scrypt for a passphrase (async). */
function deriveFileKey(key: RingKey, header: Buffer): Buffer | Promise<Buffer> {
  const salt = header.subarray(21, HEADER_BYTES);
  if (key.kdf === KDF_PASSPHRASE) return scryptKey(key.secret, salt);
  return Buffer.from(hkdfSync('sha256', key.secret, salt, HKDF_INFO, KEY_BYTES));
}

function chunkNonce(counter: number, final: boolean): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeUInt32BE(Math.floor(counter / 2 ** 32), 0);
  nonce.writeUInt32BE(counter >>> 0, 4);
  nonce[11] = final ? 1 : 0;
  return nonce;
}

function tampered(): AppError {
  return new AppError('DECRYPTION_FAILED', TAMPERED_MESSAGE);
}

function notAnArtifact(reason: string): AppError {
  return new AppError('DECRYPTION_FAILED', `not a pgkeep encrypted artifact (${reason})`);
}

/** Runs `step` and reports to a stream callback, any failure as an AppError for `pipeline()`. */
function attempt(step: () => void, done: TransformCallback): void {
  let failure: AppError | undefined;
  try {
    step();
  } catch (error) {
    failure = toAppError(error);
  }
  done(failure);
}

/** `attempt` once `value` is there: now, or when the promise (a scrypt) settles. */
function settle<T>(value: T | Promise<T>, step: (resolved: T) => void, done: TransformCallback) {
  if (value instanceof Promise) {
    value.then(
      (resolved: T) => attempt(() => step(resolved), done),
      (error: unknown) => done(toAppError(error)),
    );
  } else {
    attempt(() => step(value), done);
  }
}

class EncryptTransform extends Transform {
  readonly #header: Buffer;
  readonly #chunkBytes: number;
  readonly #pendingKey: Buffer | Promise<Buffer>;
  #fileKey: Buffer | null = null;
  readonly #pending = new ByteQueue();
  #counter = 0;

  constructor(header: Buffer, chunkBytes: number, fileKey: Buffer | Promise<Buffer>) {
    super();
    this.#header = header;
    this.#chunkBytes = chunkBytes;
    this.#pendingKey = fileKey;
  }

  override _construct(callback: (error?: Error | null) => void): void {
    settle(
      this.#pendingKey,
      (fileKey) => {
        this.#fileKey = fileKey;
        this.push(this.#header);
      },
      callback,
    );
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
    attempt(() => {
      this.#pending.push(chunk);
      // The last chunk is flagged as such, so a full chunk is held back until more bytes
      // (or the end) show whether it is the last.
      while (this.#pending.length > this.#chunkBytes) {
        this.#seal(this.#pending.take(this.#chunkBytes), false);
      }
    }, callback);
  }

  override _flush(callback: TransformCallback): void {
    attempt(() => this.#seal(this.#pending.take(this.#pending.length), true), callback);
  }

  #seal(plaintext: Buffer, final: boolean): void {
    const cipher = createCipheriv(
      'aes-256-gcm',
      this.#fileKey as Buffer,
      chunkNonce(this.#counter++, final),
      {
        authTagLength: TAG_BYTES,
      },
    );
    cipher.setAAD(this.#header);
    const ciphertext = cipher.update(plaintext);
    cipher.final();
    // Two pushes rather than one concatenation: copying every chunk costs a quarter of the speed.
    this.push(ciphertext);
    this.push(cipher.getAuthTag());
  }
}

export class DecryptTransform extends Transform {
  readonly #lookup: (keyId: string) => RingKey | undefined;
  readonly #expectedKeyId: string | undefined;
  readonly #pending = new ByteQueue();
  #header: Buffer | null = null;
  #fileKey: Buffer | null = null;
  #sealedBytes = 0;
  #counter = 0;

  constructor(lookup: (keyId: string) => RingKey | undefined, expectedKeyId: string | undefined) {
    super();
    this.#lookup = lookup;
    this.#expectedKeyId = expectedKeyId;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#pending.push(chunk);
    if (this.#fileKey !== null) {
      attempt(() => this.#drain(), callback);
    } else if (this.#pending.length < HEADER_BYTES) {
      callback();
    } else {
      let fileKey: Buffer | Promise<Buffer>;
      try {
        fileKey = this.#readHeader(this.#pending.take(HEADER_BYTES));
      } catch (error) {
        callback(toAppError(error));
        return;
      }
      // Writes wait for this callback, so no chunk arrives before the file key is there.
      settle(
        fileKey,
        (key) => {
          this.#fileKey = key;
          this.#drain();
        },
        callback,
      );
    }
  }

  override _flush(callback: TransformCallback): void {
    attempt(() => {
      if (this.#fileKey === null) throw notAnArtifact('shorter than its header');
      // `#drain` left at most one sealed chunk: the last one.
      if (this.#pending.length < TAG_BYTES) throw tampered();
      this.#open(this.#pending.take(this.#pending.length), true);
    }, callback);
  }

  #readHeader(header: Buffer): Buffer | Promise<Buffer> {
    if (!header.subarray(0, MAGIC.length).equals(MAGIC)) {
      throw notAnArtifact('unknown magic or version');
    }
    const kdf = header.readUInt8(8);
    if (kdf !== KDF_RAW_KEY && kdf !== KDF_PASSPHRASE) throw notAnArtifact('unknown kdf');
    const chunkBytes = header.readUInt32BE(9);
    if (chunkBytes < MIN_CHUNK_BYTES || chunkBytes > MAX_CHUNK_BYTES) {
      throw notAnArtifact('chunk size out of range');
    }
    const keyId = header.subarray(13, 21).toString('hex');
    if (this.#expectedKeyId !== undefined && keyId !== this.#expectedKeyId) {
      throw new AppError(
        'DECRYPTION_FAILED',
        `the artifact is encrypted with key ${keyId} but its manifest names key ${this.#expectedKeyId}`,
      );
    }
    const key = this.#lookup(keyId);
    if (key === undefined) {
      throw new AppError(
        'ENCRYPTION_KEY_MISSING',
        `the artifact is encrypted with key ${keyId}, which is not configured`,
        { details: { keyId } },
      );
    }
    // Same key id, other kdf: the kdf byte was changed.
    if (key.kdf !== kdf) throw tampered();
    this.#header = header;
    this.#sealedBytes = chunkBytes + TAG_BYTES;
    return deriveFileKey(key, header);
  }

  /** Opens every chunk known not to be the last: one is always held back until more bytes or EOF. */
  #drain(): void {
    while (this.#pending.length > this.#sealedBytes) {
      this.#open(this.#pending.take(this.#sealedBytes), false);
    }
  }

  #open(sealed: Buffer, final: boolean): void {
    const tagStart = sealed.length - TAG_BYTES;
    const decipher = createDecipheriv(
      'aes-256-gcm',
      this.#fileKey as Buffer,
      chunkNonce(this.#counter, final),
      { authTagLength: TAG_BYTES },
    );
    decipher.setAAD(this.#header as Buffer);
    decipher.setAuthTag(sealed.subarray(tagStart));
    const plaintext = decipher.update(sealed.subarray(0, tagStart));
    try {
      decipher.final();
    } catch {
      throw tampered();
    }
    this.#counter++;
    // Pushed only now that the tag verified: downstream never sees unauthenticated bytes.
    if (plaintext.length > 0) this.push(plaintext);
  }
}
