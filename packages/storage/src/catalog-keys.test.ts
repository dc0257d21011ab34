import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { catalogKeysFor } from './catalog-keys.js';
import { KeyRing } from './encryption.js';

const keyA = randomBytes(32);
const keyB = randomBytes(32);

describe('catalog keys', () => {
  it('are none when neither encryption nor CATALOG_KEY is configured', async () => {
    expect(catalogKeysFor(null, await KeyRing.create())).toEqual({ signing: null, accepted: [] });
  });

  it('are derived from the encryption key when encryption is on, and are not that key', async () => {
    const keys = catalogKeysFor(null, await KeyRing.create({ key: keyA }));
    expect(keys.signing).toHaveLength(32);
    expect(keys.signing?.equals(keyA)).toBe(false);
    expect(keys.accepted).toEqual([keys.signing]);
    // The same key gives the same catalog key, in any process.
    expect(catalogKeysFor(null, await KeyRing.create({ key: keyA })).signing).toEqual(keys.signing);
  });

  it('are derived from a passphrase the same way in every process', async () => {
    const passphrase = 'correct horse battery staple';
    const first = catalogKeysFor(null, await KeyRing.create({ passphrase }));
    const second = catalogKeysFor(null, await KeyRing.create({ passphrase }));
    expect(first.signing).toHaveLength(32);
    expect(first.signing).toEqual(second.signing);
  });

  it('after a key rotation, sign with the new key and still accept the old one', async () => {
    const before = catalogKeysFor(null, await KeyRing.create({ key: keyA }));
    const after = catalogKeysFor(null, await KeyRing.create({ key: keyB, oldKeys: [keyA] }));
    expect(after.signing?.equals(before.signing as Buffer)).toBe(false);
    expect(after.accepted).toEqual([after.signing, before.signing]);
  });

  it('sign with CATALOG_KEY when it is set, still accepting what the encryption key signed', async () => {
    const catalogKey = randomBytes(32);
    const derived = catalogKeysFor(null, await KeyRing.create({ key: keyA })).signing;
    const keys = catalogKeysFor(catalogKey, await KeyRing.create({ key: keyA }));
    expect(keys.signing).toEqual(catalogKey);
    expect(keys.accepted).toEqual([catalogKey, derived]);
    // Without encryption, CATALOG_KEY alone.
    expect(catalogKeysFor(catalogKey, await KeyRing.create())).toEqual({
      signing: catalogKey,
      accepted: [catalogKey],
    });
  });

  it('are off when only retired encryption keys are configured (encryption turned off)', async () => {
    expect(catalogKeysFor(null, await KeyRing.create({ oldKeys: [keyA] })).signing).toBeNull();
  });
});
