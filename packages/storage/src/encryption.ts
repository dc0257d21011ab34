import { createHmac, hkdfSync } from 'node:crypto';
import type { Transform } from 'node:stream';
import { AppError } from '@pgkeep/core';
import {
  DecryptTransform,
  encryptTransform,
  KDF_PASSPHRASE,
  KDF_RAW_KEY,
  KEY_BYTES,
  MAX_CHUNK_BYTES,
  MIN_CHUNK_BYTES,
  type RingKey,
  scryptKey,
} from './encryption-stream.js';

/*
 * Keys of encrypted artifacts (the format itself: encryption-stream.ts).
 */
const DEFAULT_CHUNK_BYTES = 64 * 1024;
const KEY_ID_LABEL = 'pgkeep/key-id';
const CATALOG_HKDF_INFO = 'pgkeep/catalog-hmac-v1';

const EMPTY = Buffer.alloc(0);

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
    const stream = encryptTransform(key, this.chunkBytes);
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
