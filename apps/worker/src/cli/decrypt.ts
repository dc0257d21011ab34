import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { AppError, exitWithUsage, readCommandLine } from '@pgkeep/core';
import { createKeyRing } from '@pgkeep/storage';

/**
 * `npm run decrypt -- --in backup-<id>.dump.zst.enc --out backup-<id>.dump.zst`: an encrypted
 * artifact (a download, or a copy from a bucket) back to what pg_dump and zstd wrote, with the
 * keys of the configuration. Every chunk is authenticated before it is written; on any failure
 * the output file is removed. `--out -` writes to stdout, for a pipe into zstd -d | pg_restore.
 */
const usage = `usage: npm run decrypt -- --in <file.enc> --out <file|->

Decrypts an encrypted backup artifact with the keys of the configuration (BACKUP_ENCRYPTION_KEY
or BACKUP_ENCRYPTION_PASSPHRASE, and the old ones, from the environment or .env).

options:
  --in <file>    the encrypted artifact (a download, or a copy from a bucket)
  --out <file>   where to write it, a new file; - writes to stdout
  -h, --help     this message

exit status: 0 written, 1 refused (wrong key, altered file, unreadable input), 64 wrong call
`;

const values = readCommandLine(
  'decrypt',
  usage,
  () =>
    parseArgs({
      options: {
        in: { type: 'string' },
        out: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }).values,
);
const { in: input, out: output } = values;
if (!input) exitWithUsage('decrypt', usage, '--in is required');
if (!output) exitWithUsage('decrypt', usage, '--out is required');

if (existsSync('.env')) process.loadEnvFile('.env');

// Only the keys are needed: this runs on any machine that has the file and the key.
const setting = (name: string) => process.env[name]?.trim() || undefined;
let keyRing: Awaited<ReturnType<typeof createKeyRing>>;
try {
  keyRing = await createKeyRing({
    BACKUP_ENCRYPTION_KEY: setting('BACKUP_ENCRYPTION_KEY'),
    BACKUP_ENCRYPTION_PASSPHRASE: setting('BACKUP_ENCRYPTION_PASSPHRASE'),
    BACKUP_ENCRYPTION_OLD_KEYS: (setting('BACKUP_ENCRYPTION_OLD_KEYS') ?? '')
      .split(',')
      .map((key) => key.trim())
      .filter((key) => key !== ''),
    BACKUP_ENCRYPTION_OLD_PASSPHRASE: setting('BACKUP_ENCRYPTION_OLD_PASSPHRASE'),
  });
} catch (error) {
  process.stderr.write(`${error instanceof AppError ? error.message : String(error)}\n`);
  process.exit(1);
}
const toStdout = output === '-';
try {
  await pipeline(
    createReadStream(input),
    keyRing.decryptStream(),
    toStdout ? process.stdout : createWriteStream(output, { flags: 'wx', mode: 0o600 }),
  );
} catch (error) {
  if (!toStdout && !(error as NodeJS.ErrnoException).code?.startsWith('EEXIST')) {
    await rm(output, { force: true });
  }
  const message = error instanceof AppError ? `[${error.code}] ${error.message}` : String(error);
  process.stderr.write(`${message}\n`);
  process.exit(1);
}
