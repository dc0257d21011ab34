import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import {
  type Config,
  type Logger,
  type PitrStatus,
  type ServerSettings,
  toAppError,
} from '@pgkeep/core';
import {
  AdvisoryLocks,
  clientConfig,
  type HeldLock,
  libpqEnv,
  type RunningChild,
  startChild,
} from '@pgkeep/pg';
import pg from 'pg';
import { serverConnection } from '../target-registry.js';
import { checkPitrRequirements } from './requirements.js';
import type { WalArchive } from './wal-archive.js';
import {
  isHistoryName,
  isSegmentName,
  parseLsn,
  parseSegmentName,
  segmentEnd,
} from './wal-position.js';

/** What the receiver publishes (@pgkeep/core's PitrStatus). */
export type ReceiverStatus = PitrStatus;

export interface WalReceiverOptions {
  config: Config;
  logger: Logger;
  server: ServerSettings;
  archive: WalArchive;
  workerId: string;
  publish: (status: ReceiverStatus) => Promise<void>;
  /** How often the status is published (its expiry is three times this). */
  statusIntervalMs?: number;
  /** How long a leader whose server lacks a requirement waits before checking again. */
  recheckMs?: number;
}

/** The lock that makes one worker, anywhere, the receiver of a server's WAL. */
export const receiverLockResource = (slot: string) => `wal-receiver:${slot}`;

/** Any holder of the lock gives it up when its session ends: a crashed leader's goes at once. */
const LEADER_WAIT_MS = 2_000_000_000;
const TICK_MS = 500;
/**
 * A segment begins with a long page header: a server whose insert position is no further than
 * that into the next segment has written nothing since the segment ended.
 */
const LONG_PAGE_HEADER = 40n;

interface Sample {
  at: number;
  lsn: bigint;
}

/**
 * Supervises the WAL stream of one server. Every worker runs one per server with PITR on; the
 * one that holds the server's `wal-receiver` advisory lock (a session lock on the streamed
 * server itself, so it is released the moment the leader's connection dies) is the leader, the
 * others wait on that lock and one of them takes over at once when the leader dies.
 *
 * The leader creates the physical replication slot if missing, runs `pg_receivewal` into the
 * spool (restarted with a back-off when it stops; it dies with the worker), and archives each
 * finished file the spool gets: never a `.partial` one. It samples the server's WAL insert
 * position with the server's clock, so that each archived segment records up to when it
 * covers every commit, and asks for a segment switch when WAL was written and
 * `switchWalSeconds` passed.
 */
export class WalReceiver {
  private readonly stopping = new AbortController();
  private running: Promise<void> | undefined;
  private receiver: RunningChild | undefined;
  private readonly logger: Logger;
  private status: ReceiverStatus;
  private samples: Sample[] = [];

  constructor(private readonly options: WalReceiverOptions) {
    this.logger = options.logger.child({ server: options.server.name, component: 'wal-receiver' });
    this.status = this.blankStatus();
  }

  get slot(): string {
    return this.options.server.pitr?.slot ?? '';
  }

  private blankStatus(): ReceiverStatus {
    return {
      server: this.options.server.name,
      state: 'starting',
      reasons: [],
      leader: null,
      slot: null,
      lastArchived: null,
      caughtUpAt: null,
      insertLsn: null,
      lagBytes: null,
      updatedAt: new Date().toISOString(),
    };
  }

  start(): void {
    this.running ??= this.loop().catch((error: unknown) => {
      this.logger.error({ err: error }, 'WAL receiver supervisor stopped');
    });
  }

  /** Stops the receiver (pg_receivewal ends its partial segment cleanly) and archives what finished. */
  async stop(): Promise<void> {
    this.stopping.abort();
    await this.running;
  }

  /** The pid of pg_receivewal while this worker leads (tests and the status use it). */
  get receiverPid(): number | undefined {
    return this.receiver?.child.exitCode === null ? this.receiver.child.pid : undefined;
  }

  private async loop(): Promise<void> {
    const { server, config } = this.options;
    const locks = new AdvisoryLocks(serverConnection(server), config.LOCK_NAMESPACE, this.logger);
    while (!this.stopping.signal.aborted) {
      let lock: HeldLock;
      try {
        lock = await locks.acquire(receiverLockResource(this.slot), 'exclusive', {
          timeoutMs: LEADER_WAIT_MS,
          signal: this.stopping.signal,
        });
      } catch (error) {
        if (this.stopping.signal.aborted) break;
        const appError = toAppError(error);
        if (appError.code !== 'LOCK_TIMEOUT') {
          this.logger.warn({ err: appError.message }, 'cannot wait for the WAL receiver lock');
          await delay(5_000, undefined, { signal: this.stopping.signal }).catch(() => {});
        }
        continue;
      }
      try {
        await this.lead(lock);
      } catch (error) {
        this.logger.error({ err: error }, 'WAL receiver leadership ended by an error');
      } finally {
        await lock.release().catch(() => {});
      }
      if (!this.stopping.signal.aborted) {
        await delay(1_000, undefined, { signal: this.stopping.signal }).catch(() => {});
      }
    }
  }

  private async publish(patch: Partial<ReceiverStatus> = {}): Promise<void> {
    this.status = { ...this.status, ...patch, updatedAt: new Date().toISOString() };
    await this.options.publish(this.status).catch((error: unknown) => {
      this.logger.warn({ err: (error as Error).message }, 'WAL receiver status not published');
    });
  }

  private async lead(lock: HeldLock): Promise<void> {
    const { server, archive } = this.options;
    const pitr = server.pitr;
    if (!pitr) return;
    const signal = AbortSignal.any([this.stopping.signal, lock.lost]);
    this.status = this.blankStatus();
    const leader = {
      workerId: this.options.workerId,
      hostname: os.hostname(),
      pid: process.pid,
      since: new Date().toISOString(),
    };
    await this.publish({ leader, state: 'starting' });
    this.logger.info({ slot: pitr.slot }, 'leading the WAL receiver of the server');

    const check = await checkPitrRequirements(server);
    if (!check.ok || !check.walSegmentSize || !check.systemIdentifier) {
      this.logger.error({ reasons: check.reasons }, 'point-in-time recovery unavailable');
      await this.publish({ state: 'unavailable', reasons: check.reasons });
      await this.holdWhile(signal, this.options.recheckMs ?? 60_000);
      return;
    }
    const segmentSize = check.walSegmentSize;
    try {
      await archive.claim({
        systemIdentifier: check.systemIdentifier,
        walSegmentSize: segmentSize,
      });
    } catch (error) {
      const reason = toAppError(error).message;
      this.logger.error({ reason }, 'point-in-time recovery unavailable');
      await this.publish({ state: 'unavailable', reasons: [reason] });
      await this.holdWhile(signal, this.options.recheckMs ?? 60_000);
      return;
    }

    const client = new pg.Client(clientConfig(serverConnection(server), 'pgkeep-wal-receiver'));
    client.on('error', () => {});
    await client.connect();
    try {
      await this.ensureSlot(client, pitr.slot);
      const archived = [...(await archive.archived()).values()]
        .filter((entry) => isSegmentName(entry.name))
        .sort((a, b) => a.name.localeCompare(b.name));
      const newest = archived[archived.length - 1];
      if (newest) this.status.lastArchived = { name: newest.name, at: newest.archivedAt };
      // Copies a leader that died left half written, then the files a receiver finished
      // before it (or its worker) stopped.
      await archive.sweepLeftovers('wal');
      await this.archiveFinished(segmentSize, signal);
      let failures = 0;
      let lastSwitch = Date.now();
      let lastStats = 0;
      let switchWarned = false;
      while (!signal.aborted) {
        const receiver = this.startReceiver();
        const startedAt = Date.now();
        await this.publish({ state: 'streaming', reasons: [] });
        while (
          !signal.aborted &&
          receiver.child.exitCode === null &&
          receiver.child.signalCode === null
        ) {
          await this.sample(client, segmentSize);
          await this.archiveFinished(segmentSize, signal);
          const now = Date.now();
          if (pitr.switchWalSeconds > 0 && now - lastSwitch >= pitr.switchWalSeconds * 1000) {
            lastSwitch = now;
            await client.query('SELECT pg_switch_wal()').catch((error: unknown) => {
              if (switchWarned) return;
              switchWarned = true;
              this.logger.warn(
                { err: (error as Error).message },
                'cannot switch WAL segments (grant EXECUTE on pg_switch_wal to the role): a quiet server reaches the archive only when a segment fills',
              );
            });
          }
          if (now - lastStats >= (this.options.statusIntervalMs ?? 5_000)) {
            lastStats = now;
            await this.refreshStats(client, segmentSize);
          }
          await Promise.race([
            receiver.done.catch(() => {}),
            delay(TICK_MS, undefined, { signal }).catch(() => {}),
          ]);
        }
        if (signal.aborted) {
          await this.stopReceiver(receiver);
          break;
        }
        const error = await receiver.done.then(
          () => undefined,
          (reason: unknown) => reason as Error,
        );
        await this.archiveFinished(segmentSize, signal);
        failures = Date.now() - startedAt > 60_000 ? 1 : failures + 1;
        const reason = (error?.message ?? 'pg_receivewal exited').slice(0, 500);
        this.logger.warn({ reason, failures }, 'pg_receivewal stopped: starting it again');
        await this.publish({ state: 'error', reasons: [reason] });
        await delay(Math.min(30_000, 500 * 2 ** Math.min(failures, 6)), undefined, {
          signal,
        }).catch(() => {});
      }
      // A graceful stop still holds the lock: what pg_receivewal finished goes to the archive.
      if (!lock.lost.aborted) await this.archiveFinished(segmentSize);
    } finally {
      this.receiver = undefined;
      await client.end().catch(() => {});
    }
  }

  /** Waits (republishing the status before it expires) until `ms` passed or `signal` fired. */
  private async holdWhile(signal: AbortSignal, ms: number): Promise<void> {
    const until = Date.now() + ms;
    while (!signal.aborted && Date.now() < until) {
      await delay(Math.min(5_000, until - Date.now()), undefined, { signal }).catch(() => {});
      if (!signal.aborted) await this.publish();
    }
  }

  private async ensureSlot(client: pg.Client, slot: string): Promise<void> {
    const { rows } = await client.query<{ slot_type: string }>(
      'SELECT slot_type FROM pg_replication_slots WHERE slot_name = $1',
      [slot],
    );
    if (rows[0]) {
      if (rows[0].slot_type !== 'physical') {
        throw new Error(`replication slot ${slot} exists and is not a physical slot`);
      }
      return;
    }
    // Reserved at once: the server keeps WAL from here on, even before pg_receivewal connects.
    await client
      .query('SELECT pg_create_physical_replication_slot($1, true)', [slot])
      .catch((error: { code?: string }) => {
        if (error.code !== '42710') throw error; // created by another worker meanwhile
      });
    this.logger.info({ slot }, 'replication slot created');
  }

  private startReceiver(): RunningChild {
    const { server, archive } = this.options;
    const pitr = server.pitr;
    if (!pitr) throw new Error('no pitr');
    const target = serverConnection(server);
    const receiver = startChild(
      'pg_receivewal',
      [
        '--directory',
        archive.spoolDir,
        '--slot',
        pitr.slot,
        '--no-loop',
        '--no-password',
        '--status-interval',
        '5',
      ],
      { env: libpqEnv(target, { PATH: process.env.PATH }) },
    );
    this.receiver = receiver;
    this.logger.info({ pid: receiver.child.pid }, 'pg_receivewal started');
    return receiver;
  }

  private async stopReceiver(receiver: RunningChild): Promise<void> {
    if (receiver.child.exitCode !== null || receiver.child.signalCode !== null) return;
    // SIGINT: pg_receivewal ends cleanly (SIGTERM has no handler there).
    receiver.child.kill('SIGINT');
    const exited = await Promise.race([
      receiver.done.then(
        () => true,
        () => true,
      ),
      delay(10_000).then(() => false),
    ]);
    if (!exited) receiver.child.kill('SIGKILL');
    await receiver.done.catch(() => {});
  }

  /** The server's clock and WAL insert position now: what the next archived segment covers. */
  private async sample(client: pg.Client, segmentSize: number): Promise<void> {
    try {
      const { rows } = await client.query<{ at: Date; lsn: string }>(
        'SELECT clock_timestamp() AS at, pg_current_wal_insert_lsn()::text AS lsn',
      );
      const row = rows[0];
      if (!row) return;
      const lsn = parseLsn(row.lsn);
      this.samples.push({ at: row.at.getTime(), lsn });
      if (this.samples.length > 20_000) this.samples.splice(0, this.samples.length - 20_000);
      this.status.insertLsn = row.lsn;
      const last = this.status.lastArchived?.name;
      if (last && isSegmentName(last)) {
        const end = segmentEnd(parseSegmentName(last, segmentSize).segno, segmentSize);
        if (lsn <= end + LONG_PAGE_HEADER) this.status.caughtUpAt = row.at.toISOString();
      }
    } catch (error) {
      this.logger.warn({ err: (error as Error).message }, 'cannot read the server WAL position');
    }
  }

  /** Up to when every commit lies at or before `end`: the last sample taken at or before it. */
  private coveredUntil(end: bigint): Date | null {
    let best: number | null = null;
    let keepFrom = 0;
    this.samples.forEach((sample, index) => {
      if (sample.lsn <= end + LONG_PAGE_HEADER && (best === null || sample.at > best)) {
        best = sample.at;
        keepFrom = index;
      }
    });
    // Samples before the one used can never be the best for a later segment.
    if (keepFrom > 0) this.samples.splice(0, keepFrom);
    return best === null ? null : new Date(best);
  }

  /** Archives every finished file in the spool, history files first, then segments in order. */
  private async archiveFinished(segmentSize: number, signal?: AbortSignal): Promise<void> {
    const { archive } = this.options;
    let names: string[];
    try {
      names = await fs.readdir(archive.spoolDir);
    } catch {
      return;
    }
    const history = names.filter(isHistoryName).sort();
    const segments = names.filter(isSegmentName).sort();
    for (const name of [...history, ...segments]) {
      if (signal?.aborted) return;
      const covered = isSegmentName(name)
        ? this.coveredUntil(segmentEnd(parseSegmentName(name, segmentSize).segno, segmentSize))
        : null;
      try {
        const entry = await archive.archiveFile(
          path.join(archive.spoolDir, name),
          name,
          covered,
          signal,
        );
        this.status.lastArchived = { name, at: entry.archivedAt };
        this.logger.info(
          { wal: name, bytes: entry.size, coveredUntil: entry.coveredUntil },
          'WAL file archived',
        );
      } catch (error) {
        const appError = toAppError(error);
        this.logger.error(
          { wal: name, code: appError.code, err: appError.message },
          'WAL file not archived',
        );
        await this.publish({ state: 'error', reasons: [`${name}: ${appError.message}`] });
        // In order: a later segment is not archived before an earlier one that failed.
        return;
      }
    }
  }

  private async refreshStats(client: pg.Client, segmentSize: number): Promise<void> {
    try {
      const { rows } = await client.query<{
        active: boolean;
        wal_status: string | null;
        retained: string | null;
      }>(
        `SELECT active, wal_status,
                pg_wal_lsn_diff(pg_current_wal_insert_lsn(), restart_lsn)::bigint::text AS retained
           FROM pg_replication_slots WHERE slot_name = $1`,
        [this.slot],
      );
      const row = rows[0];
      this.status.slot = row
        ? {
            name: this.slot,
            active: row.active,
            retainedBytes: row.retained === null ? null : Number(row.retained),
            walStatus: row.wal_status,
          }
        : { name: this.slot, active: false, retainedBytes: null, walStatus: 'missing' };
      const last = this.status.lastArchived?.name;
      if (this.status.insertLsn && last && isSegmentName(last)) {
        const end = segmentEnd(parseSegmentName(last, segmentSize).segno, segmentSize);
        const lag = parseLsn(this.status.insertLsn) - end;
        this.status.lagBytes = Number(lag > 0n ? lag : 0n);
      }
    } catch (error) {
      this.logger.warn({ err: (error as Error).message }, 'cannot read the replication slot');
    }
    await this.publish();
  }
}

/**
 * A server whose PITR was turned off keeps no slot of pgkeep's: a slot nobody reads holds WAL
 * on the server until its disk fills. Drops `slot` if it exists and no receiver uses it.
 */
export async function dropUnusedSlot(server: ServerSettings, slot: string, logger: Logger) {
  const client = new pg.Client(clientConfig(serverConnection(server), 'pgkeep-wal-receiver'));
  client.on('error', () => {});
  try {
    await client.connect();
    const { rows } = await client.query<{ dropped: boolean }>(
      `SELECT pg_drop_replication_slot(slot_name) IS NULL AS dropped
         FROM pg_replication_slots WHERE slot_name = $1 AND slot_type = 'physical' AND NOT active`,
      [slot],
    );
    if (rows.length > 0)
      logger.info({ server: server.name, slot }, 'replication slot of PITR dropped');
  } catch (error) {
    logger.warn(
      { server: server.name, slot, err: (error as Error).message },
      'replication slot of a server without PITR not checked',
    );
  } finally {
    await client.end().catch(() => {});
  }
}
