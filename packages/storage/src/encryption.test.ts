import { createDecipheriv, createHmac, hkdfSync, randomBytes, scryptSync } from 'node:crypto';
import { Readable, type Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { inspect } from 'node:util';
import { AppError, type ErrorCode } from '@pgkeep/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { KeyRing, parseEncryptionKey } from './encryption.js';

const HEADER = 53;
const TAG = 16;
const SMALL = 1024;
const SEALED = SMALL + TAG;
const PASSPHRASE = 'correct horse battery staple';
const SCRYPT = { N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };

const key = randomBytes(32);
const otherKey = randomBytes(32);
/** Every secret of this file, in every spelling an error message could leak it. */
const secrets = [key, otherKey].flatMap((k) => [
  k.toString('base64'),
  k.toString('base64url'),
  k.toString('hex'),
]);
secrets.push(PASSPHRASE);

function pieces(data: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let offset = 0; offset < data.length; offset += size) {
    out.push(data.subarray(offset, offset + size));
  }
  return out;
}

/** Runs `data` (cut into pieces of `pieceSize`) through `transform`; keeps what came out. */
async function run(transform: Transform, data: Buffer, pieceSize = 100_000) {
  const received: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      received.push(chunk);
      callback();
    },
  });
  let error: unknown = null;
  try {
    await pipeline(Readable.from(pieces(data, pieceSize)), transform, sink);
  } catch (caught) {
    error = caught;
  }
  return { output: Buffer.concat(received), error };
}

async function encrypt(ring: KeyRing, plaintext: Buffer, pieceSize?: number): Promise<Buffer> {
  const { output, error } = await run(ring.encryptStream().stream, plaintext, pieceSize);
  expect(error).toBeNull();
  return output;
}

async function decrypt(ring: KeyRing, sealed: Buffer, pieceSize?: number): Promise<Buffer> {
  const { output, error } = await run(ring.decryptStream(), sealed, pieceSize);
  expect(error).toBeNull();
  return output;
}

function expectAppError(error: unknown, code: ErrorCode): AppError {
  expect(error).toBeInstanceOf(AppError);
  const appError = error as AppError;
  expect(appError.code).toBe(code);
  for (const secret of secrets) expect(appError.message).not.toContain(secret);
  return appError;
}

async function expectDecryptFailure(
  ring: KeyRing,
  sealed: Buffer,
  code: ErrorCode = 'DECRYPTION_FAILED',
  expectedKeyId?: string,
) {
  const { output, error } = await run(ring.decryptStream(expectedKeyId), sealed, 333);
  return { output, error: expectAppError(error, code) };
}

function flipped(data: Buffer, offset: number): Buffer {
  const copy = Buffer.from(data);
  copy[offset] = (copy[offset] ?? 0) ^ 0x01;
  return copy;
}

/** Byte range of sealed chunk `index` in an artifact written with chunkBytes 1024. */
const chunkAt = (index: number) => [HEADER + index * SEALED, HEADER + (index + 1) * SEALED];

let ring: KeyRing;
let smallRing: KeyRing;
beforeAll(async () => {
  ring = await KeyRing.create({ key });
  smallRing = await KeyRing.create({ key, chunkBytes: SMALL });
});

describe('round trips', () => {
  for (const chunkBytes of [SMALL, 64 * 1024]) {
    const sizes = [0, 1, chunkBytes - 1, chunkBytes, chunkBytes + 1, 3 * chunkBytes + 5];
    // One-byte pieces only with small chunks: 200k stream writes would be slow, not wiser.
    const pieceSizes = chunkBytes === SMALL ? [1, 7, 100_000] : [7, 100_000];
    for (const size of sizes) {
      it(`${size} bytes with chunkBytes ${chunkBytes}, in pieces of ${pieceSizes}`, async () => {
        const current = chunkBytes === SMALL ? smallRing : ring;
        const plaintext = randomBytes(size);
        const chunks = Math.max(1, Math.ceil(size / chunkBytes));
        for (const pieceSize of pieceSizes) {
          const sealed = await encrypt(current, plaintext, pieceSize);
          expect(sealed.length).toBe(HEADER + size + chunks * TAG);
          expect(await decrypt(current, sealed, pieceSize)).toEqual(plaintext);
        }
      });
    }
  }

  it('writes the header and chunks exactly as aes-256-gcm-stream-v1 says', async () => {
    const plaintext = randomBytes(2 * SMALL + 300);
    const { stream, keyId, chunkBytes } = smallRing.encryptStream();
    const { output: sealed } = await run(stream, plaintext);
    expect(keyId).toBe(
      createHmac('sha256', key).update('pgkeep/key-id').digest('hex').slice(0, 16),
    );
    expect(chunkBytes).toBe(SMALL);
    const header = sealed.subarray(0, HEADER);
    expect(header.subarray(0, 8)).toEqual(Buffer.from('PGKEEPE\x01', 'latin1'));
    expect(header[8]).toBe(1);
    expect(header.readUInt32BE(9)).toBe(SMALL);
    expect(header.subarray(13, 21).toString('hex')).toBe(keyId);
    const fileKey = Buffer.from(
      hkdfSync('sha256', key, header.subarray(21), 'pgkeep/aes-256-gcm-stream-v1', 32),
    );
    const opened: Buffer[] = [];
    for (let index = 0; index < 3; index++) {
      const chunk = sealed.subarray(HEADER + index * SEALED, HEADER + (index + 1) * SEALED);
      const nonce = Buffer.alloc(12);
      nonce.writeUInt32BE(index, 4);
      nonce[11] = index === 2 ? 1 : 0;
      const decipher = createDecipheriv('aes-256-gcm', fileKey, nonce);
      decipher.setAAD(header);
      decipher.setAuthTag(chunk.subarray(chunk.length - TAG));
      opened.push(decipher.update(chunk.subarray(0, chunk.length - TAG)), decipher.final());
    }
    expect(Buffer.concat(opened)).toEqual(plaintext);
  });

  it('uses a fresh salt for every file', async () => {
    const plaintext = Buffer.from('same plaintext');
    const first = await encrypt(ring, plaintext);
    const second = await encrypt(ring, plaintext);
    expect(first.subarray(21, HEADER)).not.toEqual(second.subarray(21, HEADER));
    expect(first.subarray(HEADER)).not.toEqual(second.subarray(HEADER));
  });

  it('round-trips with a passphrase, whose key id follows from the passphrase alone', async () => {
    const passphraseRing = await KeyRing.create({ passphrase: PASSPHRASE, chunkBytes: SMALL });
    const stretched = scryptSync(PASSPHRASE, 'pgkeep/key-id', 32, SCRYPT);
    const expectedId = createHmac('sha256', stretched).update('pgkeep/key-id').digest('hex');
    expect(passphraseRing.writeKeyId).toBe(expectedId.slice(0, 16));
    const plaintext = randomBytes(3 * SMALL + 5);
    const sealed = await encrypt(passphraseRing, plaintext, 7);
    expect(sealed[8]).toBe(2);
    // Another process with the same passphrase reads it: 7-byte pieces make the header
    // arrive across several writes before the (async) scrypt.
    const sameRing = await KeyRing.create({ passphrase: PASSPHRASE });
    expect(await decrypt(sameRing, sealed, 7)).toEqual(plaintext);
    const wrongRing = await KeyRing.create({ passphrase: `${PASSPHRASE}!` });
    await expectDecryptFailure(wrongRing, sealed, 'ENCRYPTION_KEY_MISSING');
  }, 30_000);
});

describe('keys', () => {
  it('rotates: the new key writes, the old key still reads', async () => {
    const oldRing = await KeyRing.create({ key: otherKey });
    const plaintext = randomBytes(5000);
    const sealedWithOld = await encrypt(oldRing, plaintext);
    const rotated = await KeyRing.create({ key, oldKeys: [otherKey] });
    expect(rotated.writeKeyId).toBe(ring.writeKeyId);
    expect(rotated.writeKeyId).not.toBe(oldRing.writeKeyId);
    expect(rotated.keyIds()).toEqual([ring.writeKeyId, oldRing.writeKeyId]);
    expect(rotated.hasKey(oldRing.writeKeyId as string)).toBe(true);
    expect(await decrypt(rotated, sealedWithOld)).toEqual(plaintext);
    const sealedWithNew = await encrypt(rotated, plaintext);
    expect(sealedWithNew.subarray(13, 21).toString('hex')).toBe(ring.writeKeyId);
    await expectDecryptFailure(oldRing, sealedWithNew, 'ENCRYPTION_KEY_MISSING');
  });

  it('refuses an artifact whose key is not in the ring, naming only the key id', async () => {
    const sealed = await encrypt(ring, randomBytes(100));
    const stranger = await KeyRing.create({ key: otherKey });
    const { error, output } = await expectDecryptFailure(
      stranger,
      sealed,
      'ENCRYPTION_KEY_MISSING',
    );
    expect(error.message).toContain(ring.writeKeyId);
    expect(output.length).toBe(0);
  });

  it('refuses an artifact whose header names another key than the manifest', async () => {
    const rotated = await KeyRing.create({ key, oldKeys: [otherKey] });
    const sealed = await encrypt(rotated, randomBytes(100));
    const otherId = rotated.keyIds()[1];
    await expectDecryptFailure(rotated, sealed, 'DECRYPTION_FAILED', otherId);
    const { output, error } = await run(rotated.decryptStream(rotated.writeKeyId ?? ''), sealed);
    expect(error).toBeNull();
    expect(output.length).toBe(100);
  });

  it('has no write key when none is configured, and then refuses to encrypt', async () => {
    const readOnly = await KeyRing.create({ oldKeys: [key] });
    expect(readOnly.writeKeyId).toBeNull();
    expect(readOnly.hasKey(ring.writeKeyId as string)).toBe(true);
    expect((await KeyRing.create()).writeKeyId).toBeNull();
    expectAppError(
      (() => {
        try {
          readOnly.encryptStream();
        } catch (error) {
          return error;
        }
      })(),
      'ENCRYPTION_KEY_MISSING',
    );
  });

  it('refuses bad options', async () => {
    await expect(KeyRing.create({ key, passphrase: PASSPHRASE })).rejects.toBeInstanceOf(AppError);
    await expect(KeyRing.create({ key: key.subarray(0, 31) })).rejects.toBeInstanceOf(AppError);
    await expect(KeyRing.create({ key, chunkBytes: 1023 })).rejects.toBeInstanceOf(AppError);
    await expect(KeyRing.create({ key, chunkBytes: 16 * 1024 * 1024 + 1 })).rejects.toBeInstanceOf(
      AppError,
    );
  });

  it('never shows key material when inspected or serialized', async () => {
    const shown = [
      inspect(ring, { showHidden: true, depth: Number.POSITIVE_INFINITY }),
      inspect(ring.encryptStream().stream, { showHidden: true, depth: 4 }),
      JSON.stringify(ring),
      String(ring),
    ].join('\n');
    expect(shown).toContain(ring.writeKeyId);
    const firstBytes = [...key.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0'));
    expect(shown).not.toContain(firstBytes.join(' '));
    for (const secret of secrets) expect(shown).not.toContain(secret);
  });

  it('parses a 32-byte base64 key, standard or url-safe, and never echoes a bad one', () => {
    expect(parseEncryptionKey(key.toString('base64'))).toEqual(key);
    expect(parseEncryptionKey(key.toString('base64url'))).toEqual(key);
    expect(parseEncryptionKey(`${key.toString('base64')}\n`)).toEqual(key);
    const bad = [
      randomBytes(31).toString('base64'),
      randomBytes(33).toString('base64'),
      `${key.toString('base64').slice(0, 40)}!!!=`,
      '',
    ];
    for (const input of bad) {
      let caught: unknown;
      try {
        parseEncryptionKey(input);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(Error);
      if (input !== '') expect((caught as Error).message).not.toContain(input);
    }
  });
});

describe('tampering', () => {
  const plaintext = randomBytes(4 * SMALL + 300);
  let sealed: Buffer;
  beforeAll(async () => {
    sealed = await encrypt(smallRing, plaintext);
    expect(sealed.length).toBe(HEADER + 4 * SEALED + 300 + TAG);
  });

  it('fails on any flipped header byte', async () => {
    for (let offset = 0; offset < HEADER; offset++) {
      const inKeyId = offset >= 13 && offset < 21;
      const tampered = flipped(sealed, offset);
      await expectDecryptFailure(
        smallRing,
        tampered,
        inKeyId ? 'ENCRYPTION_KEY_MISSING' : 'DECRYPTION_FAILED',
      );
      await expectDecryptFailure(
        smallRing,
        tampered,
        'DECRYPTION_FAILED',
        smallRing.writeKeyId ?? '',
      );
    }
  });

  it('fails on a kdf byte changed to the other valid kdf', async () => {
    const tampered = Buffer.from(sealed);
    tampered[8] = 2;
    await expectDecryptFailure(smallRing, tampered);
  });

  it('fails on a flipped byte in a middle chunk, a tag, or the last chunk', async () => {
    const [middle = 0] = chunkAt(2);
    const [, tagEnd = 0] = chunkAt(1);
    for (const offset of [middle + 100, tagEnd - 5, sealed.length - 1, HEADER]) {
      await expectDecryptFailure(smallRing, flipped(sealed, offset));
    }
  });

  it('fails when truncated mid-chunk, at a chunk boundary, to the header, or to 10 bytes', async () => {
    const [, secondEnd = 0] = chunkAt(1);
    const [, fourthEnd = 0] = chunkAt(3);
    for (const length of [secondEnd + 500, secondEnd, fourthEnd, sealed.length - 1, HEADER + 15]) {
      await expectDecryptFailure(smallRing, sealed.subarray(0, length));
    }
    for (const length of [HEADER, 10, 0]) {
      await expectDecryptFailure(smallRing, sealed.subarray(0, length));
    }
  });

  it('fails when chunks are swapped, duplicated, or bytes are appended', async () => {
    const [a = 0, b = 0] = chunkAt(1);
    const [, c = 0] = chunkAt(2);
    const swapped = Buffer.concat([
      sealed.subarray(0, a),
      sealed.subarray(b, c),
      sealed.subarray(a, b),
      sealed.subarray(c),
    ]);
    const duplicated = Buffer.concat([sealed.subarray(0, b), sealed.subarray(a)]);
    const appended = [Buffer.from([0]), randomBytes(16), sealed.subarray(sealed.length - 316)];
    for (const bad of [swapped, duplicated, ...appended.map((x) => Buffer.concat([sealed, x]))]) {
      await expectDecryptFailure(smallRing, bad);
    }
  });

  it('fails on a chunk spliced in from another file with the same key', async () => {
    const other = await encrypt(smallRing, randomBytes(4 * SMALL + 300));
    const [a = 0, b = 0] = chunkAt(1);
    const spliced = Buffer.concat([
      sealed.subarray(0, a),
      other.subarray(a, b),
      sealed.subarray(b),
    ]);
    await expectDecryptFailure(smallRing, spliced);
  });

  it('fails on data that is not an encrypted artifact', async () => {
    const { error } = await expectDecryptFailure(smallRing, randomBytes(5000));
    expect(error.message).toMatch(/not a pgkeep encrypted artifact/);
  });

  it('passes downstream only authenticated bytes: the first two chunks before a bad third', async () => {
    const [third = 0] = chunkAt(2);
    for (const pieceSize of [1, 333, 100_000]) {
      const { output, error } = await run(
        smallRing.decryptStream(),
        flipped(sealed, third + 10),
        pieceSize,
      );
      expectAppError(error, 'DECRYPTION_FAILED');
      expect(output).toEqual(plaintext.subarray(0, 2 * SMALL));
    }
  });
});
