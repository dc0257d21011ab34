import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { type BackupManifest, parseManifestText } from './manifest.js';
import {
  type CatalogKeys,
  canonicalJson,
  catalogKeyId,
  checkManifestSignature,
  manifestText,
  unsignedCatalog,
} from './manifest-signature.js';

const id = '2026-01-22T16-30-00-000Z-a1b2c3a1b2c3';
const manifest: BackupManifest = {
  manifestVersion: 2,
  id,
  filename: `backup-${id}.dump.zst`,
  size: 1234,
  sha256: 'ab'.repeat(32),
  createdAt: '2026-01-22T16:30:00.000Z',
  completedAt: '2026-01-22T16:30:05.000Z',
  durationMs: 5000,
  type: 'manual',
  status: 'completed',
  format: 'custom',
  compression: 'zstd',
  tables: ['public.User'],
  database: 'app',
  serverVersion: '15.20',
  pgDumpVersion: '15.20',
  rowCounts: { 'public.User': 3 },
  requestedBy: 'admin-1',
  label: null,
  jobId: 'backup-1',
  encryption: null,
  copies: [
    {
      destination: 'local',
      location: `backup-${id}.dump.zst`,
      size: 1234,
      sha256: 'ab'.repeat(32),
      writtenAt: '2026-01-22T16:30:05.000Z',
    },
  ],
  failedCopies: [],
};

const keyA = randomBytes(32);
const keyB = randomBytes(32);
const signedBy = (key: Buffer, accepted: Buffer[] = [key]): CatalogKeys => ({
  signing: key,
  accepted,
});
const edit = (text: string, change: (json: Record<string, unknown>) => void) => {
  const json = JSON.parse(text) as Record<string, unknown>;
  change(json);
  return JSON.stringify(json);
};

describe('canonicalJson', () => {
  it('gives the same text whatever the key order and spacing', () => {
    const a = JSON.parse('{"b": 1, "a": {"y": [1, {"d": null, "c": "x"}], "x": true}}');
    const b = JSON.parse('{"a":{"x":true,"y":[1,{"c":"x","d":null}]},"b":1}');
    expect(canonicalJson(a)).toBe(canonicalJson(b));
    expect(canonicalJson(a)).toBe('{"a":{"x":true,"y":[1,{"c":"x","d":null}]},"b":1}');
  });
});

describe('signed manifests', () => {
  it('carry an HMAC-SHA256 over the canonical JSON of every other field', () => {
    const text = manifestText(manifest, signedBy(keyA));
    const { hmac, ...rest } = JSON.parse(text) as Record<string, unknown>;
    // Written from the description alone: a label, then the canonical JSON.
    const expected = createHmac('sha256', keyA)
      .update(`pgkeep-manifest-hmac-v1\n${canonicalJson(rest)}`)
      .digest('hex');
    expect(hmac).toBe(expected);
    expect(parseManifestText(text, id, signedBy(keyA))).toEqual({ ok: true, manifest });
  });

  it('verify after the file is reformatted or its keys reordered', () => {
    const json = JSON.parse(manifestText(manifest, signedBy(keyA))) as Record<string, unknown>;
    const reordered = Object.fromEntries(Object.entries(json).reverse());
    expect(parseManifestText(JSON.stringify(reordered), id, signedBy(keyA)).ok).toBe(true);
  });

  it.each([
    [
      'a table added',
      (json: Record<string, unknown>) => {
        json.tables = ['public.User', 'public.Payment'];
      },
    ],
    [
      'a row count changed',
      (json: Record<string, unknown>) => {
        json.rowCounts = { 'public.User': 4 };
      },
    ],
    [
      'the sha256 changed',
      (json: Record<string, unknown>) => {
        json.sha256 = 'cd'.repeat(32);
      },
    ],
    [
      'a field added',
      (json: Record<string, unknown>) => {
        json.note = 'hello';
      },
    ],
    [
      'a copy removed',
      (json: Record<string, unknown>) => {
        json.copies = [];
        json.manifestVersion = 1;
      },
    ],
    [
      'the HMAC removed',
      (json: Record<string, unknown>) => {
        delete json.hmac;
      },
    ],
    [
      'the HMAC not hex',
      (json: Record<string, unknown>) => {
        json.hmac = 'z'.repeat(64);
      },
    ],
  ])('are refused with %s', (_label, change) => {
    const text = edit(manifestText(manifest, signedBy(keyA)), change);
    const parsed = parseManifestText(text, id, signedBy(keyA));
    expect(parsed.ok).toBe(false);
    expect(parsed.ok ? '' : parsed.reason).toMatch(/HMAC/);
  });

  it('are refused when signed with another key, and accepted once that key is accepted', () => {
    const text = manifestText(manifest, signedBy(keyB));
    expect(parseManifestText(text, id, signedBy(keyA)).ok).toBe(false);
    expect(parseManifestText(text, id, signedBy(keyA, [keyA, keyB])).ok).toBe(true);
    expect(checkManifestSignature(JSON.parse(text), [keyA, keyB])).toEqual({
      status: 'valid',
      key: keyB,
    });
  });

  it('are written and read as before when no key is configured', () => {
    const text = manifestText(manifest, unsignedCatalog);
    expect(JSON.parse(text)).not.toHaveProperty('hmac');
    expect(parseManifestText(text, id).ok).toBe(true);
    // A signed manifest read without a key: believed as any manifest was before.
    expect(parseManifestText(manifestText(manifest, signedBy(keyA)), id).ok).toBe(true);
  });

  it('name a key by an id that reveals nothing of it', () => {
    expect(catalogKeyId(keyA)).toMatch(/^[0-9a-f]{16}$/);
    expect(catalogKeyId(keyA)).not.toBe(catalogKeyId(keyB));
    expect(keyA.toString('hex')).not.toContain(catalogKeyId(keyA));
  });
});
