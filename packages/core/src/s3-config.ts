import { z } from 'zod';
import { booleanFromEnv, int, webhookUrl } from './env-values.js';

/** One S3-compatible destination, from its `S3_<NAME>_*` keys. */
export interface S3DestinationSettings {
  name: string;
  bucket: string;
  region: string;
  endpoint?: string;
  prefix: string;
  forcePathStyle: boolean;
  accessKeyId?: string;
  secretAccessKey?: string;
  sessionToken?: string;
  required: boolean;
  checksums: 'when_supported' | 'when_required';
  partSizeMinBytes: number;
  queueSize: number;
  maxAttempts: number;
}

/**
 * The keys of one S3 destination `<NAME>`, each read as `S3_<NAME>_<KEY>` (e.g.
 * `S3_OFFSITE_BUCKET`) for every name in BACKUP_DESTINATIONS but `local`.
 */
export const s3DestinationSchema = z
  .object({
    BUCKET: z
      .string()
      .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be an S3 bucket name (3-63 chars)')
      .describe(
        'The bucket; setting it makes `<NAME>` a destination that `BACKUP_DESTINATIONS` may list.',
      ),
    REGION: z.string().min(1).max(64).default('us-east-1').describe("The bucket's region."),
    ENDPOINT: webhookUrl
      .optional()
      .describe('Endpoint of an S3-compatible store (MinIO, R2, B2, Wasabi…); unset for AWS.'),
    PREFIX: z
      .string()
      .regex(/^[A-Za-z0-9!_.*'()/-]{0,512}$/, "letters, digits and !_.*'()/- only")
      .refine(
        (value) => !value.startsWith('/') && !value.includes('..'),
        'must be a relative key prefix',
      )
      .default('')
      .describe('Key prefix of every object (a `/` is added at its end).'),
    FORCE_PATH_STYLE: booleanFromEnv
      .default(false)
      .describe('Path-style URLs (MinIO and most self-hosted stores).'),
    ACCESS_KEY_ID: z
      .string()
      .min(1)
      .optional()
      .describe(
        "Access key, with `SECRET_ACCESS_KEY` (both or neither); unset: the AWS SDK's default credentials.",
      ),
    SECRET_ACCESS_KEY: z.string().min(1).optional().describe('Secret key, with `ACCESS_KEY_ID`.'),
    SESSION_TOKEN: z.string().min(1).optional().describe('Session token of temporary credentials.'),
    REQUIRED: booleanFromEnv
      .default(true)
      .describe(
        '`false`: a copy that fails leaves the backup completed without it (`failedCopies`) instead of failing it.',
      ),
    CHECKSUMS: z
      .enum(['when_supported', 'when_required'])
      .default('when_supported')
      .describe("`when_required` for stores that reject the SDK's default CRC32 checksum headers."),
    PART_SIZE_MB: int(5, 5_120)
      .default(16)
      .describe(
        "Smallest multipart part; raised so a dump of twice the database's size estimate stays under 10,000 parts.",
      ),
    QUEUE_SIZE: int(1, 16)
      .default(2)
      .describe('Parts uploaded at once; memory per upload is about part size × (queue size + 1).'),
    MAX_ATTEMPTS: int(1, 20)
      .default(3)
      .describe("Attempts of each S3 request (the SDK's retries)."),
  })
  .refine((value) => Boolean(value.ACCESS_KEY_ID) === Boolean(value.SECRET_ACCESS_KEY), {
    message: 'ACCESS_KEY_ID and SECRET_ACCESS_KEY go together',
    path: ['SECRET_ACCESS_KEY'],
  });

/** Reads `S3_<NAME>_*` for every destination named in BACKUP_DESTINATIONS but `local`. */
export function s3Destinations(
  names: string[],
  env: Record<string, string>,
  issues: string[],
): S3DestinationSettings[] {
  const destinations: S3DestinationSettings[] = [];
  for (const name of names) {
    if (name === 'local') continue;
    const prefix = `S3_${name.toUpperCase()}_`;
    const raw: Record<string, string> = {};
    for (const [key, value] of Object.entries(env)) {
      if (key.startsWith(prefix)) raw[key.slice(prefix.length)] = value;
    }
    const parsed = s3DestinationSchema.safeParse(raw);
    if (!parsed.success) {
      for (const issue of parsed.error.issues) {
        issues.push(`${prefix}${issue.path.join('.')}: ${issue.message}`);
      }
      continue;
    }
    const value = parsed.data;
    let keyPrefix = value.PREFIX;
    if (keyPrefix !== '' && !keyPrefix.endsWith('/')) keyPrefix = `${keyPrefix}/`;
    destinations.push({
      name,
      bucket: value.BUCKET,
      region: value.REGION,
      ...(value.ENDPOINT ? { endpoint: value.ENDPOINT } : {}),
      prefix: keyPrefix,
      forcePathStyle: value.FORCE_PATH_STYLE,
      ...(value.ACCESS_KEY_ID ? { accessKeyId: value.ACCESS_KEY_ID } : {}),
      ...(value.SECRET_ACCESS_KEY ? { secretAccessKey: value.SECRET_ACCESS_KEY } : {}),
      ...(value.SESSION_TOKEN ? { sessionToken: value.SESSION_TOKEN } : {}),
      required: value.REQUIRED,
      checksums: value.CHECKSUMS,
      partSizeMinBytes: value.PART_SIZE_MB * 1024 * 1024,
      queueSize: value.QUEUE_SIZE,
      maxAttempts: value.MAX_ATTEMPTS,
    });
  }
  return destinations;
}

/** Names with S3_<NAME>_BUCKET set but missing from BACKUP_DESTINATIONS (logged at start). */
export function unusedS3Destinations(listedNames: string[], env: Record<string, string>): string[] {
  const listed = new Set(listedNames);
  return Object.keys(env)
    .map((key) => /^S3_([A-Z][A-Z0-9]{0,31})_BUCKET$/.exec(key)?.[1]?.toLowerCase())
    .filter((name): name is string => name !== undefined && !listed.has(name));
}
