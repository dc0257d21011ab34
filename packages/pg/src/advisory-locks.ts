import { createHash } from 'node:crypto';
import { AppError, type Logger } from '@pgkeep/core';
import pg from 'pg';
import { clientConfig, type PgTarget } from './connection.js';

export type LockMode = 'shared' | 'exclusive';

/**
 * Resources that jobs lock. A destructive job holds one of the DESTRUCTIVE_CONCURRENCY slots
 * (`destructive`, `destructive#1`, …) and its target database's `destructive-db` exclusively.
 */
export const lockResources = {
  destructive: 'destructive',
  /** The slots of a cap: slot 0 keeps the plain name, so a cap of 1 is the one lock it was. */
  slot: (base: string, index: number) => (index === 0 ? base : `${base}#${index}`),
  /** Delete, clean-up and restore of one database never overlap. */
  destructiveDatabase: (server: string, database: string) => `destructive-db:${server}/${database}`,
  /** The per-server cap on dumps and restores (maxConcurrentJobs slots). */
  serverSlot: (server: string) => `server-slot:${server}`,
  /** Backups hold it shared while they write; the partial-file sweep needs it exclusively. */
  storageWrite: 'storage-write',
  /** A database's backups and verifies (shared) against its restore (exclusive). */
  database: (name: string, server = 'default') =>
    server === 'default' ? `database:${name}` : `database:${server}/${name}`,
  /** Restores and verifies hold it shared while they read a backup; deleting needs it. */
  backup: (id: string) => `backup:${id}`,
  /** Verifies hold it shared while their scratch database exists; the start-up sweep needs it. */
  verifyScratch: 'verify-scratch',
} as const;

function int32Of(text: string): number {
  return createHash('sha256').update(text).digest().readInt32BE(0);
}

export interface HeldLock {
  readonly resource: string;
  readonly mode: LockMode;
  readonly acquiredAt: Date;
  readonly waitedMs: number;
  /** Aborted if the lock's connection dies: the holder must stop, exclusivity is gone. */
  readonly lost: AbortSignal;
  release(): Promise<Date>;
}

/**
 * PostgreSQL advisory locks, each on its own connection to the maintenance database. The server
 * releases a lock the moment its session ends, so a crashed or killed worker can never leave
 * one held, and two holders of an exclusive lock cannot exist. Keys are (namespace, resource)
 * hashed to two int4s, so separate deployments sharing a server do not block each other.
 */
export class AdvisoryLocks {
  private readonly namespaceKey: number;
  /** application_name of a spare session (names its deployment, for pg_stat_activity). */
  private readonly spareName: string;
  /** Connected sessions holding nothing, ready for the next lock (see `options.spares`). */
  private readonly spares = new Set<pg.Client>();
  private sparesConnecting = 0;
  private closed = false;

  /**
   * `spares`: sessions kept connected ahead of need, so taking a lock costs a round trip and
   * not a connection (a job takes three before pg_dump starts). A lock's session still ends
   * when the lock is released: a spare never held anything.
   */
  constructor(
    private readonly maintenance: PgTarget,
    namespace: string,
    private readonly logger: Logger,
    private readonly options: { spares?: number } = {},
  ) {
    this.namespaceKey = int32Of(`pgkeep:${namespace}`);
    this.spareName = `pgkeep-lock-spare:${namespace}`.slice(0, 63);
  }

  private async newSession(name: string): Promise<pg.Client> {
    const client = new pg.Client(clientConfig(this.maintenance, name));
    client.on('error', () => {
      // Reported through the `lost` signal; an unhandled 'error' would crash the process.
    });
    // clientConfig sets client_connection_check_interval: a waiting backend notices a vanished
    // client within seconds, so an abandoned wait never turns into a lock held for nobody.
    await client.connect();
    return client;
  }

  private async connect(resource: string): Promise<pg.Client> {
    const name = `pgkeep-lock:${resource}`;
    const spare = this.spares.values().next().value as pg.Client | undefined;
    if (spare) {
      this.spares.delete(spare);
      this.refill();
      try {
        await spare.query("SELECT set_config('application_name', $1, false)", [name]);
        return spare;
      } catch {
        // It died while idle: a new session instead.
        await spare.end().catch(() => {});
      }
    }
    this.refill();
    return this.newSession(name);
  }

  /** Tops the spares up in the background; a failed connect is tried again at the next lock. */
  private refill(): void {
    const wanted = this.options.spares ?? 0;
    while (!this.closed && this.spares.size + this.sparesConnecting < wanted) {
      this.sparesConnecting += 1;
      void this.newSession(this.spareName)
        .then((client) => {
          if (this.closed) {
            void client.end().catch(() => {});
            return;
          }
          const drop = () => this.spares.delete(client);
          client.once('end', drop);
          client.once('error', drop);
          this.spares.add(client);
        })
        .catch((error: unknown) => {
          this.logger.debug({ err: error }, 'could not connect a spare lock session');
        })
        .finally(() => {
          this.sparesConnecting -= 1;
        });
    }
  }

  /** Ends the spare sessions; held locks are released by their holders. */
  async close(): Promise<void> {
    this.closed = true;
    const spares = [...this.spares];
    this.spares.clear();
    await Promise.all(spares.map((client) => client.end().catch(() => {})));
  }

  async acquire(
    resource: string,
    mode: LockMode,
    options: { timeoutMs: number; signal?: AbortSignal | undefined },
  ): Promise<HeldLock> {
    const started = Date.now();
    const client = await this.connect(resource);
    const onAbort = () => void client.end().catch(() => {});
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const fn = mode === 'shared' ? 'pg_advisory_lock_shared' : 'pg_advisory_lock';
    const objectKey = int32Of(resource);
    try {
      await client.query("SELECT set_config('lock_timeout', $1, false)", [
        String(Math.max(1, Math.floor(options.timeoutMs))),
      ]);
      await client.query(`SELECT ${fn}($1::int4, $2::int4)`, [this.namespaceKey, objectKey]);
    } catch (error) {
      await client.end().catch(() => {});
      if (options.signal?.aborted) {
        throw new AppError('JOB_ABORTED', `aborted while waiting for the ${resource} lock`);
      }
      if ((error as { code?: string }).code === '55P03') {
        throw new AppError(
          'LOCK_TIMEOUT',
          `the ${resource} lock was not free within ${options.timeoutMs} ms`,
          { retryable: true },
        );
      }
      throw new AppError('DATABASE_UNAVAILABLE', `could not take the ${resource} lock`, {
        retryable: true,
        cause: error,
      });
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
    }
    return this.held(client, resource, mode, objectKey, started);
  }

  /**
   * Takes the first of `resources` that comes free (exclusive), trying them all on one
   * connection every `pollMs` until the timeout: a cap of N is N slots, any one will do.
   */
  async acquireAny(
    resources: string[],
    options: { timeoutMs: number; signal?: AbortSignal | undefined; pollMs?: number },
  ): Promise<HeldLock> {
    const first = resources[0];
    if (first === undefined) throw new Error('acquireAny needs a resource');
    if (resources.length === 1) return this.acquire(first, 'exclusive', options);
    const started = Date.now();
    const client = await this.connect(`${first}*`);
    const pollMs = options.pollMs ?? 200;
    try {
      for (;;) {
        // A different slot order per waiter, so waiters do not all queue on slot 0.
        const offset = Math.floor(Math.random() * resources.length);
        for (let i = 0; i < resources.length; i += 1) {
          const resource = resources[(offset + i) % resources.length] as string;
          const objectKey = int32Of(resource);
          const { rows } = await client.query<{ locked: boolean }>(
            'SELECT pg_try_advisory_lock($1::int4, $2::int4) AS locked',
            [this.namespaceKey, objectKey],
          );
          if (rows[0]?.locked) return this.held(client, resource, 'exclusive', objectKey, started);
        }
        if (options.signal?.aborted) {
          throw new AppError('JOB_ABORTED', `aborted while waiting for a ${first} slot`);
        }
        if (Date.now() - started >= options.timeoutMs) {
          throw new AppError(
            'LOCK_TIMEOUT',
            `no ${first} slot was free within ${options.timeoutMs} ms`,
            { retryable: true },
          );
        }
        await new Promise((resolve) => setTimeout(resolve, pollMs + Math.random() * pollMs));
      }
    } catch (error) {
      await client.end().catch(() => {});
      if (error instanceof AppError) throw error;
      throw new AppError('DATABASE_UNAVAILABLE', `could not take a ${first} slot`, {
        retryable: true,
        cause: error,
      });
    }
  }

  /** Takes the lock only if it is free right now; `undefined` when someone holds it. */
  async tryAcquire(resource: string, mode: LockMode): Promise<HeldLock | undefined> {
    const started = Date.now();
    const client = await this.connect(resource);
    const fn = mode === 'shared' ? 'pg_try_advisory_lock_shared' : 'pg_try_advisory_lock';
    const objectKey = int32Of(resource);
    try {
      const { rows } = await client.query<{ locked: boolean }>(
        `SELECT ${fn}($1::int4, $2::int4) AS locked`,
        [this.namespaceKey, objectKey],
      );
      if (rows[0]?.locked) return this.held(client, resource, mode, objectKey, started);
    } catch (error) {
      await client.end().catch(() => {});
      throw error;
    }
    await client.end().catch(() => {});
    return undefined;
  }

  private held(
    client: pg.Client,
    resource: string,
    mode: LockMode,
    objectKey: number,
    started: number,
  ): HeldLock {
    const lost = new AbortController();
    let released = false;
    const onLost = () => {
      if (released || lost.signal.aborted) return;
      this.logger.error({ resource, mode }, 'lock connection lost while the lock was held');
      lost.abort(new AppError('LOCK_TIMEOUT', `lost the ${resource} lock`, { retryable: true }));
    };
    client.on('error', onLost);
    client.on('end', onLost);
    const acquiredAt = new Date();
    const unlockFn = mode === 'shared' ? 'pg_advisory_unlock_shared' : 'pg_advisory_unlock';
    return {
      resource,
      mode,
      acquiredAt,
      waitedMs: acquiredAt.getTime() - started,
      lost: lost.signal,
      release: async () => {
        // Taken before the unlock is sent: the next holder's acquiredAt always comes after it,
        // so (acquiredAt, releasedAt) bounds exactly the time this holder had the lock.
        const releasedAt = new Date();
        if (released) return releasedAt;
        released = true;
        try {
          await client.query(`SELECT ${unlockFn}($1::int4, $2::int4)`, [
            this.namespaceKey,
            objectKey,
          ]);
        } catch {
          // Ending the session below releases it all the same.
        }
        await client.end().catch(() => {});
        return releasedAt;
      },
    };
  }
}
