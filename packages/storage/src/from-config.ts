import path from 'node:path';
import { type Config, type Logger, targetStoragePrefix } from '@pgkeep/core';
import { BackupStore } from './backup-store.js';
import { catalogKeysFor } from './catalog-keys.js';
import type { Destination } from './destination.js';
import { KeyRing, parseEncryptionKey } from './encryption.js';
import { LocalStorage } from './local-storage.js';

/**
 * One target's catalog and destinations (by default BACKUP_DESTINATIONS, in its order), each
 * under the target's prefix, all signing and verifying manifests with the catalog keys. The S3
 * driver (and the AWS SDK with it) is loaded only when an S3 destination is configured.
 * `keyRing`: the process's own, when it has one.
 */
export async function createBackupStore(
  config: Config,
  logger: Logger,
  options: {
    target?: string;
    /** Instead of the target's prefix (a server's WAL archive lives under `pitr/<server>/`). */
    prefix?: string;
    destinations?: string[];
    keyRing?: KeyRing;
  } = {},
): Promise<BackupStore> {
  const keys = catalogKeysFor(
    config.CATALOG_KEY ? parseEncryptionKey(config.CATALOG_KEY) : null,
    options.keyRing ?? (await createKeyRing(config)),
  );
  const prefix = options.prefix ?? targetStoragePrefix(options.target ?? 'default');
  const catalog = new LocalStorage(path.join(config.BACKUP_DIR, prefix), logger, keys);
  const destinations: Destination[] = [];
  for (const name of options.destinations ?? config.BACKUP_DESTINATIONS) {
    if (name === 'local') {
      destinations.push(catalog);
      continue;
    }
    const settings = config.S3_DESTINATIONS.find((destination) => destination.name === name);
    if (!settings)
      throw new Error(`destination ${name} has no S3_${name.toUpperCase()}_* settings`);
    const { S3Destination } = await import('./s3-destination.js');
    destinations.push(
      new S3Destination({ ...settings, prefix: `${settings.prefix}${prefix}` }, logger, keys),
    );
  }
  return new BackupStore(catalog, destinations, logger, {
    copyAttempts: config.BACKUP_COPY_ATTEMPTS,
    copyRetryDelayMs: config.BACKUP_COPY_RETRY_DELAY_MS,
  });
}

/** The encryption keys of the configuration: the current one writes, old ones read. */
export function createKeyRing(
  config: Pick<
    Config,
    | 'BACKUP_ENCRYPTION_KEY'
    | 'BACKUP_ENCRYPTION_PASSPHRASE'
    | 'BACKUP_ENCRYPTION_OLD_KEYS'
    | 'BACKUP_ENCRYPTION_OLD_PASSPHRASE'
  >,
): Promise<KeyRing> {
  return KeyRing.create({
    ...(config.BACKUP_ENCRYPTION_KEY
      ? { key: parseEncryptionKey(config.BACKUP_ENCRYPTION_KEY) }
      : {}),
    ...(config.BACKUP_ENCRYPTION_PASSPHRASE
      ? { passphrase: config.BACKUP_ENCRYPTION_PASSPHRASE }
      : {}),
    oldKeys: config.BACKUP_ENCRYPTION_OLD_KEYS.map(parseEncryptionKey),
    oldPassphrases: config.BACKUP_ENCRYPTION_OLD_PASSPHRASE
      ? [config.BACKUP_ENCRYPTION_OLD_PASSPHRASE]
      : [],
  });
}
