import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { exitWithUsage, readCommandLine } from '@pgkeep/core';
import { createSigner } from 'fast-jwt';
import { z } from 'zod';

/**
 * Prints a signed admin token for operators and the curl examples of the docs:
 *   npm run token -- --role SUPER_ADMIN --sub ops@example.com --expires 1h
 */
const usage = `usage: npm run token -- [options]

Prints a signed admin token (HS256 with JWT_SECRET, from the environment or .env).

options:
  --role <role>          the token's role (default SUPER_ADMIN)
  --sub <name>           who the token names (default operator)
  --permission <name>    a permission it carries, e.g. backup:manage (repeatable)
  --expires <duration>   how long it lives: a number and s, m, h, d or w (default 1h)
  -h, --help             this message

exit status: 0 printed, 1 no usable JWT_SECRET or a lifetime the API refuses, 64 wrong call
`;

const values = readCommandLine(
  'token',
  usage,
  () =>
    parseArgs({
      options: {
        role: { type: 'string', default: 'SUPER_ADMIN' },
        sub: { type: 'string', default: 'operator' },
        permission: { type: 'string', multiple: true },
        expires: { type: 'string', default: '1h' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }).values,
);
const units = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;
const duration = /^([1-9][0-9]{0,8})(s|m|h|d|w)$/.exec(values.expires);
if (!duration) {
  exitWithUsage(
    'token',
    usage,
    `--expires ${JSON.stringify(values.expires)}: not a duration such as 30m, 12h or 7d`,
  );
}
const expiresInMs = Number(duration[1]) * units[duration[2] as keyof typeof units];
for (const [name, value] of [
  ['--role', values.role],
  ['--sub', values.sub],
  ...(values.permission ?? []).map((permission) => ['--permission', permission] as const),
] as const) {
  if (value.trim() === '') exitWithUsage('token', usage, `${name} is empty`);
}

// The same .env that `npm start` uses; variables already set win.
if (existsSync('.env')) process.loadEnvFile('.env');

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
  expiresIn: expiresInMs,
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
