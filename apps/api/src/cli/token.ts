import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createSigner } from 'fast-jwt';
import { z } from 'zod';

/**
 * Prints a signed admin token for operators and the curl examples of the docs:
 *   npm run token -- --role SUPER_ADMIN --sub ops@example.com --expires 1h
 */
// The same .env that `npm start` uses; variables already set win.
if (existsSync('.env')) process.loadEnvFile('.env');

const { values } = parseArgs({
  options: {
    role: { type: 'string', default: 'SUPER_ADMIN' },
    sub: { type: 'string', default: 'operator' },
    permission: { type: 'string', multiple: true },
    expires: { type: 'string', default: '1h' },
  },
});

const secret = z
  .string({ message: 'JWT_SECRET is not set (see .env.example)' })
  .min(32, 'JWT_SECRET must be at least 32 characters')
  .safeParse(process.env.JWT_SECRET);
if (!secret.success) {
  process.stderr.write(`${secret.error.issues[0]?.message}\n`);
  process.exit(1);
}
// What the API checks (JWT_ISSUER, JWT_AUDIENCE, JWT_MAX_LIFETIME_SECONDS) the token carries;
// a lifetime the API would refuse is refused here, before a token is printed.
const issuer = process.env.JWT_ISSUER?.trim() || undefined;
const audience = process.env.JWT_AUDIENCE?.trim() || undefined;
const maxLifetime = process.env.JWT_MAX_LIFETIME_SECONDS?.trim() || undefined;
const sign = createSigner({
  key: secret.data,
  algorithm: 'HS256',
  expiresIn: values.expires,
  ...(issuer ? { iss: issuer } : {}),
  ...(audience ? { aud: audience } : {}),
});
const claims: Record<string, unknown> = { sub: values.sub, role: values.role };
if (values.permission) claims.permissions = values.permission;
const token = sign(claims);
const { exp, iat } = JSON.parse(
  Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8'),
) as { exp: number; iat: number };
if (maxLifetime && exp - iat > Number(maxLifetime)) {
  process.stderr.write(
    `--expires ${values.expires} is longer than JWT_MAX_LIFETIME_SECONDS (${maxLifetime} s): the API would refuse the token\n`,
  );
  process.exit(1);
}
process.stdout.write(`${token}\n`);
