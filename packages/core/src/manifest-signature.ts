import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * The keys a deployment authenticates its manifests with: every manifest it writes carries an
 * `hmac` field, HMAC-SHA256 over the canonical JSON of the manifest without that field. A
 * manifest from a disk or a bucket is only believed when its HMAC verifies under one of them.
 */
export interface CatalogKeys {
  /** Signs every manifest written. null: manifests are written and read unsigned. */
  signing: Buffer | null;
  /** Verified against on reading: the signing key and any earlier one still trusted. */
  accepted: readonly Buffer[];
}

export const unsignedCatalog: CatalogKeys = { signing: null, accepted: [] };

const HMAC_LABEL = 'pgkeep-manifest-hmac-v1\n';
const KEY_ID_LABEL = 'pgkeep/catalog-key-id';
const hmacPattern = /^[0-9a-f]{64}$/;

/**
 * JSON with every object's keys sorted (by UTF-16 code unit, as Array.prototype.sort does) and
 * no whitespace: the same bytes for the same data, whatever order or spacing a file has.
 */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    const entries = Object.keys(record)
      .filter((key) => record[key] !== undefined)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonicalJson(record[key])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

function hmacOf(fields: Record<string, unknown>, key: Buffer): Buffer {
  const { hmac: _ignored, ...rest } = fields;
  return createHmac('sha256', key).update(HMAC_LABEL).update(canonicalJson(rest)).digest();
}

/** A public name for a catalog key (never the key): which one signed a catalog. */
export function catalogKeyId(key: Buffer): string {
  return createHmac('sha256', key).update(KEY_ID_LABEL).digest().subarray(0, 8).toString('hex');
}

/**
 * A manifest's file text: its JSON as it would be read back, plus the HMAC when a signing key
 * is configured.
 */
export function manifestText(manifest: object, keys: CatalogKeys): string {
  // Signed as it will be parsed: what JSON keeps of it, nothing more.
  const fields = JSON.parse(JSON.stringify(manifest)) as Record<string, unknown>;
  delete fields.hmac;
  const body = keys.signing
    ? { ...fields, hmac: hmacOf(fields, keys.signing).toString('hex') }
    : fields;
  return `${JSON.stringify(body, null, 2)}\n`;
}

export type ManifestSignature =
  | { status: 'valid'; key: Buffer }
  | { status: 'missing' }
  | { status: 'mismatch' };

/** Which accepted key, if any, the HMAC of a parsed manifest file verifies under. */
export function checkManifestSignature(json: unknown, keys: readonly Buffer[]): ManifestSignature {
  if (json === null || typeof json !== 'object' || Array.isArray(json))
    return { status: 'missing' };
  const fields = json as Record<string, unknown>;
  if (fields.hmac === undefined) return { status: 'missing' };
  if (typeof fields.hmac !== 'string' || !hmacPattern.test(fields.hmac)) {
    return { status: 'mismatch' };
  }
  const given = Buffer.from(fields.hmac, 'hex');
  for (const key of keys) {
    if (timingSafeEqual(hmacOf(fields, key), given)) return { status: 'valid', key };
  }
  return { status: 'mismatch' };
}

/** Why a manifest is refused when a catalog key is configured; undefined when it is believed. */
export function signatureProblem(json: unknown, keys: CatalogKeys): string | undefined {
  if (!keys.signing) return undefined;
  const signature = checkManifestSignature(json, keys.accepted);
  if (signature.status === 'missing') return 'no HMAC: not written by this deployment';
  if (signature.status === 'mismatch') {
    return 'HMAC does not match: changed since it was written, or not written by this deployment';
  }
  return undefined;
}
