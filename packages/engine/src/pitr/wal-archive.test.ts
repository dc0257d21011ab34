import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  appendFile,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import {
  AppError,
  type ArchivedWal,
  type BaseBackupManifest,
  baseBackupManifestFilename,
  createLogger,
  loadConfig,
  type PitrSettings,
  pitrDefaults,
  serverSettings,
  walEntrySchema,
} from '@pgkeep/core';
import { createKeyRing, type KeyRing } from '@pgkeep/storage';
import { afterEach, describe, expect, it } from 'vitest';
import { baseBackup, MiB, segment } from './pitr-fixtures.js';
import { WalArchive } from './wal-archive.js';

const logger = createLogger('silent', 'test');
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

const pitr = (encryption: boolean): PitrSettings => ({
  slot: 'pgkeep_main',
  destinations: ['local'],
  encryption,
  baseBackup: {
    schedule: { pattern: pitrDefaults.baseBackupSchedule, enabled: false },
    checkpoint: 'fast',
  },
  retention: { kind: 'keep-last', keepLast: 2 },
  cleanup: { schedule: { pattern: pitrDefaults.cleanupSchedule, enabled: false } },
  timeZone: 'UTC',
  lagWarningSeconds: pitrDefaults.lagWarningSeconds,
  retainedWarningBytes: pitrDefaults.retainedWarningBytes,
  switchWalSeconds: 0,
});

interface Opened {
  archive: WalArchive;
  keyRing: KeyRing;
  /** BACKUP_DIR/pitr/main: the local destination's files. */
  stored: string;
}

const dirs: string[] = [];

afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function openArchive(options: { encryption?: boolean } = {}): Promise<Opened> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-wal-archive-'));
  dirs.push(dir);
  const config = loadConfig({
    JWT_SECRET: 'a-very-long-hs256-secret-of-40-characters!',
    DATABASE_URL: 'postgres://u@127.0.0.1:5432/postgres',
    BACKUP_DIR: dir,
    BACKUP_DESTINATIONS: 'local',
    ...(options.encryption ? { BACKUP_ENCRYPTION_KEY: randomBytes(32).toString('base64') } : {}),
  });
  const server = serverSettings({
    name: 'main',
    url: 'postgres://u@127.0.0.1:5432/postgres',
    password: undefined,
    maintenanceDatabase: 'postgres',
    maxConcurrentJobs: 1,
    pitr: pitr(options.encryption ?? false),
  });
  const keyRing = await createKeyRing(config);
  const archive = await WalArchive.open(config, logger, server, keyRing);
  return { archive, keyRing, stored: path.join(dir, 'pitr', 'main') };
}

/** A finished segment in the spool: `bytes` of random data (1 MiB unless given). */
async function spool(
  archive: WalArchive,
  name: string,
  bytes: Buffer = randomBytes(MiB),
): Promise<{ file: string; bytes: Buffer }> {
  const file = path.join(archive.spoolDir, name);
  await writeFile(file, bytes);
  return { file, bytes };
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Byte for byte (toEqual walks a Buffer index by index: far too slow for a megabyte). */
function expectSameBytes(actual: Buffer, expected: Buffer): void {
  expect(actual.length).toBe(expected.length);
  expect(sha256(actual)).toBe(sha256(expected));
}

const exists = (file: string) =>
  stat(file).then(
    () => true,
    () => false,
  );

async function catalogLines(archive: WalArchive): Promise<string[]> {
  const text = await readFile(path.join(archive.catalogDir, 'wal-catalog.jsonl'), 'utf8');
  return text.split('\n').filter((line) => line !== '');
}

/** Whether zstd reads the file as a valid frame (its checksums included). */
function readableAsZstd(file: string): boolean {
  try {
    execFileSync('zstd', ['-t', '-q', file], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function rejection(promise: Promise<unknown>): Promise<AppError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(AppError);
  return error as AppError;
}

describe('WalArchive', () => {
  it('archives a segment from the spool and gives its exact bytes back', async () => {
    const { archive, stored } = await openArchive();
    const name = segment(1, 3);
    const { file, bytes } = await spool(archive, name);
    const coveredUntil = new Date('2026-03-01T10:00:00.000Z');

    const entry = await archive.archiveFile(file, name, coveredUntil);
    expect(entry).toMatchObject({
      op: 'archived',
      name,
      filename: `${name}.zst`,
      walSize: MiB,
      walSha256: sha256(bytes),
      encryption: null,
      destinations: ['local'],
      coveredUntil: coveredUntil.toISOString(),
    });
    expect(await exists(file)).toBe(false);

    // What is stored is zstd, with the size and sha256 the catalog says.
    const storedBytes = await readFile(path.join(stored, entry.filename));
    expect(storedBytes.subarray(0, 4)).toEqual(ZSTD_MAGIC);
    expect(storedBytes.length).toBe(entry.size);
    expect(sha256(storedBytes)).toBe(entry.sha256);
    expect(readableAsZstd(path.join(stored, entry.filename))).toBe(true);

    // One catalog line, the entry returned; archived() lists it.
    const lines = await catalogLines(archive);
    expect(lines.map((line) => walEntrySchema.parse(JSON.parse(line)))).toEqual([entry]);
    expect([...(await archive.archived()).values()]).toEqual([entry]);

    expectSameBytes(await readAll(await archive.openWal(entry)), bytes);
  });

  it('archives encrypted when the server says so: not readable as zstd, read back exact', async () => {
    const { archive, keyRing, stored } = await openArchive({ encryption: true });
    const name = segment(1, 4);
    const { file, bytes } = await spool(archive, name);

    const entry = await archive.archiveFile(file, name, null);
    expect(entry.filename).toBe(`${name}.zst.enc`);
    expect(entry.encryption).toMatchObject({
      algorithm: 'aes-256-gcm-stream-v1',
      keyId: keyRing.writeKeyId,
    });
    expect(entry.walSha256).toBe(sha256(bytes));
    expect(entry.coveredUntil).toBeNull();
    expect(await exists(file)).toBe(false);

    const storedFile = path.join(stored, entry.filename);
    const storedBytes = await readFile(storedFile);
    expect(storedBytes.subarray(0, 4)).not.toEqual(ZSTD_MAGIC);
    expect(readableAsZstd(storedFile)).toBe(false);
    // Random bytes do not compress: zstd stores them as they are, so a plain copy would hold
    // this run of the input; the encrypted one must not.
    expect(storedBytes.includes(bytes.subarray(4096, 4096 + 64))).toBe(false);
    expect(await exists(path.join(stored, `${name}.zst`))).toBe(false);

    expectSameBytes(await readAll(await archive.openWal(entry)), bytes);
  });

  it('takes the same file twice as one: the second time it only leaves the spool', async () => {
    const { archive, stored } = await openArchive();
    const name = segment(1, 5);
    const { file, bytes } = await spool(archive, name);
    const entry = await archive.archiveFile(file, name, null);
    const storedBefore = await readFile(path.join(stored, entry.filename));

    // pg_receivewal wrote the same segment again (a restart from the slot's position).
    await spool(archive, name, bytes);
    const again = await archive.archiveFile(file, name, new Date());
    expect(again).toEqual(entry);
    expect(await exists(file)).toBe(false);
    expect(await catalogLines(archive)).toHaveLength(1);
    expectSameBytes(await readFile(path.join(stored, entry.filename)), storedBefore);
  });

  it('refuses other bytes under an archived name and leaves them in the spool', async () => {
    const { archive } = await openArchive();
    const name = segment(1, 6);
    const { file, bytes } = await spool(archive, name);
    const entry = await archive.archiveFile(file, name, null);

    const other = Buffer.from(bytes);
    other[MiB - 1] = (other[MiB - 1] ?? 0) ^ 1;
    await spool(archive, name, other);
    const error = await rejection(archive.archiveFile(file, name, null));
    expect(error.code).toBe('PITR_ARCHIVE_CONFLICT');
    expect(error.message).toContain(name);

    expectSameBytes(await readFile(file), other);
    expect(await catalogLines(archive)).toHaveLength(1);
    expectSameBytes(await readAll(await archive.openWal(entry)), bytes);
  });

  it('removes archived WAL from its destinations and from the listing', async () => {
    const { archive, stored } = await openArchive();
    const kept = await archive.archiveFile(
      (await spool(archive, segment(1, 7))).file,
      segment(1, 7),
      null,
    );
    const gone = await archive.archiveFile(
      (await spool(archive, segment(1, 8))).file,
      segment(1, 8),
      null,
    );

    await archive.removeWal([gone]);
    expect(await exists(path.join(stored, gone.filename))).toBe(false);
    expect(await exists(path.join(stored, kept.filename))).toBe(true);
    expect([...(await archive.archived()).keys()]).toEqual([kept.name]);
    const last = (await archive.entries()).at(-1);
    expect(last).toMatchObject({ op: 'removed', name: gone.name });

    // The name can be archived again afterwards (the catalog is replayed in order).
    const { file, bytes } = await spool(archive, gone.name);
    const back = await archive.archiveFile(file, gone.name, null);
    expect([...(await archive.archived()).keys()].sort()).toEqual([kept.name, gone.name].sort());
    expectSameBytes(await readAll(await archive.openWal(back)), bytes);
  });

  it('skips a torn last catalog line, and records the next file after it', async () => {
    const { archive } = await openArchive();
    const first = await archive.archiveFile(
      (await spool(archive, segment(1, 9))).file,
      segment(1, 9),
      null,
    );
    // A crash in the middle of appending the next line: half of it, no newline.
    const line = JSON.stringify({
      ...first,
      name: segment(1, 10),
      filename: `${segment(1, 10)}.zst`,
    });
    await appendFile(
      path.join(archive.catalogDir, 'wal-catalog.jsonl'),
      line.slice(0, Math.floor(line.length / 2)),
    );
    expect((await archive.entries()).map((entry) => entry.name)).toEqual([first.name]);
    expect([...(await archive.archived()).keys()]).toEqual([first.name]);

    // The receiver starts again and archives the segment: it must be in the catalog.
    const { file, bytes } = await spool(archive, segment(1, 10));
    const next = await archive.archiveFile(file, segment(1, 10), null);
    const live = await archive.archived();
    expect([...live.keys()]).toEqual([first.name, next.name]);
    expectSameBytes(
      await readAll(await archive.openWal(live.get(next.name) as ArchivedWal)),
      bytes,
    );
  });

  it('holds one cluster: another system identifier is refused', async () => {
    const { archive } = await openArchive();
    expect(await archive.identity()).toBeUndefined();
    const identity = { systemIdentifier: '7350000000000000001', walSegmentSize: 16 * MiB };
    await archive.claim(identity);
    await archive.claim(identity);
    expect(await archive.identity()).toEqual(identity);

    const error = await rejection(
      archive.claim({ systemIdentifier: '7350000000000000002', walSegmentSize: 16 * MiB }),
    );
    expect(error.code).toBe('PITR_UNAVAILABLE');
    expect(error.message).toContain('7350000000000000002');
    expect(error.message).toContain('pitr/main/');
    expect(await archive.identity()).toEqual(identity);
  });

  it('sweeps what interrupted writes left, and nothing that is listed or archived', async () => {
    const { archive, stored } = await openArchive();
    const listed = baseBackup({ start: 2, stop: 3, stopTime: '2026-03-01T01:05:00.000Z' });
    await writeFile(path.join(stored, listed.filename), 'tar.zst bytes');
    await archive.saveBaseBackup(listed);
    const leftovers = {
      wal: [`${segment(1, 7)}.zst.partial`, '00000002.history.zst.enc.partial'],
      basebackup: [
        'basebackup-2026-03-02T00-00-00-000Z-aaaaaaaaaaaa.tar.zst.partial',
        'basebackup-2026-03-02T00-00-00-000Z-bbbbbbbbbbbb.tar.zst.enc',
      ],
    };
    const kept = [`${segment(1, 6)}.zst`, listed.filename, baseBackupManifestFilename(listed.id)];
    for (const name of [...leftovers.wal, ...leftovers.basebackup, `${segment(1, 6)}.zst`]) {
      await writeFile(path.join(stored, name), 'bytes');
    }
    await mkdir(path.join(stored, `verify-${listed.id}`), { recursive: true });

    expect((await archive.sweepLeftovers('wal')).sort()).toEqual([...leftovers.wal].sort());
    expect((await archive.sweepLeftovers('basebackup')).sort()).toEqual(
      [...leftovers.basebackup, `verify-${listed.id}`].sort(),
    );
    const left = await readdir(stored);
    for (const name of kept) expect(left).toContain(name);
    for (const name of [...leftovers.wal, ...leftovers.basebackup]) {
      expect(left).not.toContain(name);
    }
  });

  it('saves, lists and removes base backups, and reports manifests named for another id', async () => {
    const { archive, stored } = await openArchive();
    expect(await archive.baseBackups()).toEqual({ manifests: [], invalid: [] });
    const older = baseBackup({ start: 2, stop: 3, stopTime: '2026-03-01T01:05:00.000Z' });
    const newer = baseBackup({ start: 12, stop: 13, stopTime: '2026-03-08T01:05:00.000Z' });
    for (const manifest of [older, newer]) {
      await writeFile(path.join(stored, manifest.filename), 'tar.zst bytes');
      await archive.saveBaseBackup(manifest);
    }

    // In the catalog and beside its artifact in the destination, newest first.
    expect(await archive.baseBackups()).toEqual({ manifests: [newer, older], invalid: [] });
    const besideArtifact = JSON.parse(
      await readFile(path.join(stored, baseBackupManifestFilename(older.id)), 'utf8'),
    ) as BaseBackupManifest;
    expect(besideArtifact).toEqual(older);

    // Saved again (verified later, say): replaced, still one manifest.
    const verified = {
      ...older,
      verification: { tool: 'pg_verifybackup' as const, ok: true, at: '2026-03-01T02:00:00.000Z' },
    };
    await archive.saveBaseBackup(verified);
    expect((await archive.baseBackups()).manifests).toEqual([newer, verified]);

    // A manifest under another id's file name is not listed (removing that id would delete
    // another base backup's files), nor a file that is not JSON.
    const misnamed = baseBackupManifestFilename('2026-03-09T00-00-00-000Z-0000000000ff');
    await writeFile(path.join(archive.catalogDir, misnamed), JSON.stringify(newer));
    await writeFile(path.join(archive.catalogDir, baseBackupManifestFilename('x')), '{"id":');
    const listed = await archive.baseBackups();
    expect(listed.manifests).toEqual([newer, verified]);
    expect(listed.invalid).toEqual(
      expect.arrayContaining([
        { file: misnamed, reason: 'named for another id' },
        { file: baseBackupManifestFilename('x'), reason: 'not JSON' },
      ]),
    );
    expect(listed.invalid).toHaveLength(2);

    await archive.removeBaseBackup(verified);
    expect((await archive.baseBackups()).manifests).toEqual([newer]);
    expect(await exists(path.join(stored, older.filename))).toBe(false);
    expect(await exists(path.join(stored, baseBackupManifestFilename(older.id)))).toBe(false);
    expect(await exists(path.join(stored, newer.filename))).toBe(true);
    expect(await exists(path.join(stored, baseBackupManifestFilename(newer.id)))).toBe(true);
  });
});
