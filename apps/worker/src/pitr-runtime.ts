import os from 'node:os';
import { AppError, type Config, type Logger, type ServerSettings, slotNameFor } from '@pgkeep/core';
import {
  dropUnusedSlot,
  type PitrContext,
  scratchLockResource,
  sweepScratchInstances,
  WalArchive,
  WalReceiver,
} from '@pgkeep/engine';
import type { AdvisoryLocks } from '@pgkeep/pg';
import { publishPitrStatus, readPitrStatus } from '@pgkeep/queue';
import type { KeyRing } from '@pgkeep/storage';
import type { Redis } from 'ioredis';

/** What makes a receiver or an archive different: the server's address and its PITR settings. */
const keyOf = (server: ServerSettings) =>
  JSON.stringify({ name: server.name, url: server.url, pitr: server.pitr });

/**
 * The worker's side of point-in-time recovery: one WalReceiver per server with PITR on (only
 * one of all workers leads each), the servers' archives for base backup and clean-up jobs,
 * and the slots of servers whose PITR was turned off, dropped.
 */
export class PitrRuntime {
  private readonly receivers = new Map<string, { key: string; receiver: WalReceiver }>();
  private readonly archives = new Map<string, { key: string; archive: Promise<WalArchive> }>();
  private servers: ServerSettings[] = [];

  constructor(
    private readonly config: Config,
    private readonly logger: Logger,
    private readonly keyRing: KeyRing,
    private readonly locks: AdvisoryLocks,
    private readonly redis: Redis,
    private readonly workerId: string,
  ) {}

  private archiveOf(server: ServerSettings): Promise<WalArchive> {
    const key = keyOf(server);
    const cached = this.archives.get(server.name);
    if (cached?.key === key) return cached.archive;
    const archive = WalArchive.open(this.config, this.logger, server, this.keyRing);
    archive.catch(() => this.archives.delete(server.name));
    this.archives.set(server.name, { key, archive });
    return archive;
  }

  async contextFor(name: string): Promise<PitrContext> {
    const server = this.servers.find((candidate) => candidate.name === name);
    if (!server) throw new AppError('TARGET_NOT_FOUND', `no server is named ${name}`);
    if (!server.pitr) {
      throw new AppError('PITR_NOT_ENABLED', `server ${name} has no point-in-time recovery`);
    }
    return {
      config: this.config,
      logger: this.logger.child({ server: name }),
      locks: this.locks,
      keyRing: this.keyRing,
      server,
      archive: await this.archiveOf(server),
      receiverStatus: () => readPitrStatus(this.redis, this.config.REDIS_PREFIX, name),
    };
  }

  /** The receivers follow the configuration: started, restarted on a change, stopped. */
  async apply(servers: ServerSettings[]): Promise<void> {
    const before = this.servers;
    this.servers = servers;
    for (const [name, { key, receiver }] of this.receivers) {
      const server = servers.find((candidate) => candidate.name === name);
      if (server?.pitr && keyOf(server) === key) continue;
      await receiver.stop();
      this.receivers.delete(name);
      this.logger.info({ server: name }, 'WAL receiver stopped: the server or its PITR changed');
    }
    for (const server of servers) {
      if (!server.pitr || this.receivers.has(server.name)) continue;
      let archive: WalArchive;
      try {
        archive = await this.archiveOf(server);
      } catch (error) {
        this.logger.error({ server: server.name, err: error }, 'WAL archive cannot be opened');
        continue;
      }
      const receiver = new WalReceiver({
        config: this.config,
        logger: this.logger,
        server,
        archive,
        workerId: this.workerId,
        statusIntervalMs: this.config.PITR_STATUS_INTERVAL_MS,
        recheckMs: this.config.PITR_RECHECK_MS,
        publish: (status) =>
          publishPitrStatus(
            this.redis,
            this.config.REDIS_PREFIX,
            status,
            this.config.PITR_STATUS_INTERVAL_MS * 3 + 1_000,
          ),
      });
      receiver.start();
      this.receivers.set(server.name, { key: keyOf(server), receiver });
      // A base backup whose worker died left its partial artifact: removed while none runs.
      const idle = await this.locks
        .tryAcquire(`basebackup:${server.name}`, 'exclusive')
        .catch(() => undefined);
      if (idle) {
        await archive.sweepLeftovers('basebackup').catch((error: unknown) => {
          this.logger.warn({ server: server.name, err: error }, 'archive leftovers not swept');
        });
        await idle.release();
      }
    }
    // A server whose PITR is off (now, or since before this worker started) must not keep a
    // slot of pgkeep's holding WAL on it. In the background: a server that is down delays nothing.
    const turnedOff = servers.filter(
      (server) =>
        !server.pitr &&
        (before.length === 0 || before.some((old) => old.name === server.name && old.pitr)),
    );
    for (const server of turnedOff) {
      void dropUnusedSlot(server, slotNameFor(server.name), this.logger);
    }
  }

  /**
   * Scratch directories of point-in-time restores whose worker died: a directory whose lock
   * nobody holds is abandoned (a running restore holds its own).
   */
  async sweepScratch(): Promise<string[]> {
    return sweepScratchInstances(
      this.config.PITR_SCRATCH_DIR ?? os.tmpdir(),
      this.config.LOCK_NAMESPACE,
      async (dir) => {
        const lock = await this.locks.tryAcquire(scratchLockResource(dir), 'exclusive');
        if (!lock) return undefined;
        return async () => {
          await lock.release();
        };
      },
      this.logger,
    );
  }

  receiverOf(server: string): WalReceiver | undefined {
    return this.receivers.get(server)?.receiver;
  }

  async close(): Promise<void> {
    await Promise.all([...this.receivers.values()].map(({ receiver }) => receiver.stop()));
    this.receivers.clear();
  }
}
