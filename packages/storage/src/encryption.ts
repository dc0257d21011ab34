import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  hkdfSync,
  randomBytes,
  type ScryptOptions,
  scrypt,
} from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { AppError, encryptionAlgorithm, toAppError } from '@pgkeep/core';

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
const KEY_BYTES = 32;
const KDF_RAW_KEY = 1;
const KDF_PASSPHRASE = 2;
const MIN_CHUNK_BYTES = 1024;
const MAX_CHUNK_BYTES = 16 * 1024 * 1024;
const DEFAULT_CHUNK_BYTES = 64 * 1024;
const HKDF_INFO = `pgkeep/${encryptionAlgorithm}`;
const KEY_ID_LABEL = 'pgkeep/key-id';
const CATALOG_HKDF_INFO = 'pgkeep/catalog-hmac-v1';
const SCRYPT_OPTIONS: ScryptOptions = { N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };

const EMPTY = Buffer.alloc(0);

const TAMPERED_MESSAGE =
  'cannot decrypt the artifact: wrong key, or the file was changed, truncated or reordered';

/** Decodes a base64 (standard or url-safe) 32-byte key. The message never echoes the input. */
export function parseEncryptionKey(base64: string): Buffer {
  const text = base64.trim();
  const wellFormed = /^[A-Za-z0-9+/]{43}=?$/.test(text) || /^[A-Za-z0-9_-]{43}=?$/.test(text);
  const key = wellFormed ? Buffer.from(text, 'base64') : null;
  if (key === null || key.length !== KEY_BYTES) {
    throw new AppError(
      'VALIDATION_ERROR',
      'an encryption key must be 32 bytes encoded as base64 (standard or url-safe)',
    );
  }
  return key;
}

export interface KeyRingOptions {
  /** The current raw 32-byte key: writes new artifacts. At most one of key and passphrase. */
  key?: Buffer;
  /** The current passphrase: writes new artifacts. */
  passphrase?: string;
  /** Retired keys and passphrases: still read, never write. */
  oldKeys?: Buffer[];
  oldPassphrases?: string[];
  /** Plaintext bytes per chunk of the artifacts written; 1024..16 MiB, default 64 KiB. */
  chunkBytes?: number;
}

/** A key as the ring holds it: `secret` is the raw key (kdf 1) or the passphrase's UTF-8 bytes. */
interface RingKey {
  keyId: string;
  kdf: typeof KDF_RAW_KEY | typeof KDF_PASSPHRASE;
  secret: Buffer;
  /** The key manifests are authenticated with when no CATALOG_KEY is set (HKDF, own label). */
  catalogKey: Buffer;
}

/**
 * The keys an artifact may be encrypted with: the current one writes, all of them read, so a
 * key can be rotated without making older backups unreadable. Key material lives only in private
 * fields, which neither `util.inspect`, `JSON.stringify` nor error messages ever show.
 */
export class KeyRing {
  /** The key id new artifacts are written with; null when encryption is off. */
  readonly writeKeyId: string | null;
  readonly chunkBytes: number;
  readonly #keys: Map<string, RingKey>;

  private constructor(keys: RingKey[], writeKeyId: string | null, chunkBytes: number) {
    this.#keys = new Map();
    for (const key of keys) if (!this.#keys.has(key.keyId)) this.#keys.set(key.keyId, key);
    this.writeKeyId = writeKeyId;
    this.chunkBytes = chunkBytes;
  }

  /** Async because a passphrase's key id costs one scrypt, run off the event loop. */
  static async create(options: KeyRingOptions = {}): Promise<KeyRing> {
    if (options.key !== undefined && options.passphrase !== undefined) {
      throw new AppError('VALIDATION_ERROR', 'give an encryption key or a passphrase, not both');
    }
    const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    if (
      !Number.isInteger(chunkBytes) ||
      chunkBytes < MIN_CHUNK_BYTES ||
      chunkBytes > MAX_CHUNK_BYTES
    ) {
      throw new AppError(
        'VALIDATION_ERROR',
        `chunkBytes must be an integer from ${MIN_CHUNK_BYTES} to ${MAX_CHUNK_BYTES}`,
      );
    }
    const current =
      options.key !== undefined
        ? rawRingKey(options.key)
        : options.passphrase !== undefined
          ? await passphraseRingKey(options.passphrase)
          : null;
    const old = [
      ...(options.oldKeys ?? []).map(rawRingKey),
      ...(await Promise.all((options.oldPassphrases ?? []).map(passphraseRingKey))),
    ];
    const keys = current === null ? old : [current, ...old];
    return new KeyRing(keys, current?.keyId ?? null, chunkBytes);
  }

  hasKey(keyId: string): boolean {
    return this.#keys.has(keyId);
  }

  /** The current key's id first (if any), then the old ones. */
  keyIds(): string[] {
    return [...this.#keys.keys()];
  }

  /**
   * Catalog keys derived from the ring's keys, in the same order: the current key's first
   * (when there is one), so manifests signed before a key rotation still verify.
   */
  derivedCatalogKeys(): { current: Buffer | null; all: Buffer[] } {
    const current = this.writeKeyId === null ? undefined : this.#keys.get(this.writeKeyId);
    return {
      current: current ? Buffer.from(current.catalogKey) : null,
      all: [...this.#keys.values()].map((key) => Buffer.from(key.catalogKey)),
    };
  }

  /** A Transform from plaintext to an encrypted artifact (header, then chunks). */
  encryptStream(): { stream: Transform; keyId: string; chunkBytes: number } {
    const key = this.writeKeyId === null ? undefined : this.#keys.get(this.writeKeyId);
    if (key === undefined) {
      throw new AppError('ENCRYPTION_KEY_MISSING', 'no encryption key is configured for writing');
    }
    const header = Buffer.alloc(HEADER_BYTES);
    MAGIC.copy(header, 0);
    header.writeUInt8(key.kdf, 8);
    header.writeUInt32BE(this.chunkBytes, 9);
    header.write(key.keyId, 13, 'hex');
    randomBytes(32).copy(header, 21);
    const stream = new EncryptTransform(header, this.chunkBytes, deriveFileKey(key, header));
    return { stream, keyId: key.keyId, chunkBytes: this.chunkBytes };
  }

  /**
   * A Transform from an encrypted artifact to its plaintext. `expectedKeyId` is the key id the
   * manifest names: a file whose header names another one is refused.
   */
  decryptStream(expectedKeyId?: string): Transform {
    return new DecryptTransform((keyId) => this.#keys.get(keyId), expectedKeyId);
  }
}

function rawRingKey(key: Buffer): RingKey {
  if (!Buffer.isBuffer(key) || key.length !== KEY_BYTES) {
    throw new AppError('VALIDATION_ERROR', 'an encryption key must be exactly 32 bytes');
  }
  const secret = Buffer.from(key);
  return { keyId: keyIdOf(secret), kdf: KDF_RAW_KEY, secret, catalogKey: catalogKeyOf(secret) };
}

async function passphraseRingKey(passphrase: string): Promise<RingKey> {
  if (typeof passphrase !== 'string' || passphrase.length === 0) {
    throw new AppError('VALIDATION_ERROR', 'an encryption passphrase must not be empty');
  }
  const secret = Buffer.from(passphrase, 'utf8');
  const stretched = await scryptKey(secret, KEY_ID_LABEL);
  return {
    keyId: keyIdOf(stretched),
    kdf: KDF_PASSPHRASE,
    secret,
    catalogKey: catalogKeyOf(stretched),
  };
}

/** HKDF with its own label: knowing the catalog key tells nothing about the encryption key. */
function catalogKeyOf(key: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', key, EMPTY, CATALOG_HKDF_INFO, KEY_BYTES));
}

function keyIdOf(key: Buffer): string {
  return createHmac('sha256', key).update(KEY_ID_LABEL).digest().subarray(0, 8).toString('hex');
}

function scryptKey(secret: Buffer, salt: Buffer | string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(secret, salt, KEY_BYTES, SCRYPT_OPTIONS, (error, derived) =>
      error ? reject(error) : resolve(derived),
    );
  });
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

/**
 * Buffers awaiting a cut, kept as a list: concatenating the whole pending buffer on every small
 * write would be quadratic. `take` copies only when a cut spans several buffers.
 */
class ByteQueue {
  #parts: Buffer[] = [];
  #head = 0;
  length = 0;

  push(buffer: Buffer): void {
    if (buffer.length === 0) return;
    this.#parts.push(buffer);
    this.length += buffer.length;
  }

  /** Removes and returns the first `count` bytes; `count` must not exceed `length`. */
  take(count: number): Buffer {
    const first = this.#parts[this.#head];
    let piece: Buffer;
    if (first === undefined || count === 0) {
      piece = EMPTY;
    } else if (first.length >= count) {
      piece = first.subarray(0, count);
      this.#consume(first, count);
    } else {
      piece = Buffer.allocUnsafe(count);
      let offset = 0;
      while (offset < count) {
        const part = this.#parts[this.#head] as Buffer;
        const used = Math.min(part.length, count - offset);
        part.copy(piece, offset, 0, used);
        offset += used;
        this.#consume(part, used);
      }
    }
    this.length -= count;
    if (this.#head === this.#parts.length) {
      this.#parts = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#parts.length) {
      this.#parts.splice(0, this.#head);
      this.#head = 0;
    }
    return piece;
  }

  #consume(part: Buffer, used: number): void {
    if (used === part.length) {
      // Cleared, not only skipped: a consumed slot must not keep its buffer alive.
      this.#parts[this.#head] = EMPTY;
      this.#head++;
    } else {
      this.#parts[this.#head] = part.subarray(used);
    }
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

class DecryptTransform extends Transform {
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
