import {
  AppError,
  type Config,
  discoveredTargetName,
  discoveryPicks,
  type Logger,
  type ServerSettings,
  type TargetSettings,
  type TargetsConfig,
} from '@pgkeep/core';
import { clientConfig, listDatabases, type PgTarget, parseDatabaseUrl } from '@pgkeep/pg';
import { type BackupStore, createBackupStore, createKeyRing, type KeyRing } from '@pgkeep/storage';
import pg from 'pg';
import type { TargetInfo } from './engine-context.js';

/** A target ready to work on: its settings (database filled in), its server, its connections. */
export interface ResolvedTarget {
  info: TargetInfo;
  server: ServerSettings;
  /** The target database. */
  database: PgTarget;
  /** The server's maintenance database. */
  maintenance: PgTarget;
  /** The configured target it comes from (the discovery target, for a discovered database). */
  configured: TargetSettings;
}

export function serverConnection(server: ServerSettings, database?: string): PgTarget {
  const parsed = parseDatabaseUrl(server.url);
  return {
    ...parsed,
    password: server.password ?? parsed.password,
    database: database ?? server.maintenanceDatabase,
  };
}

/**
 * The targets of the configuration, resolved by name, with one backup store per target kept
 * for the life of the process. A configured name resolves to its target; `<server>/<db>`
 * resolves when a discovery target of that server picks the database and no configured target
 * names it (a configured target always wins over discovery).
 */
export class TargetRegistry {
  private readonly stores = new Map<string, { key: string; store: Promise<BackupStore> }>();
  private discovered = new Map<string, { at: number; databases: Promise<string[]> }>();

  private keyRing: Promise<KeyRing> | undefined;

  /** `keyRing`: the process's own; without one, made once, when the first store needs it. */
  constructor(
    private readonly config: Config,
    private readonly logger: Logger,
    private current: TargetsConfig,
    keyRing?: KeyRing,
  ) {
    if (keyRing) this.keyRing = Promise.resolve(keyRing);
  }

  get targets(): TargetsConfig {
    return this.current;
  }

  /** A reloaded targets file: later lookups see it; running jobs keep what they resolved. */
  replace(next: TargetsConfig): void {
    this.current = next;
    this.discovered = new Map();
  }

  server(name: string): ServerSettings | undefined {
    return this.current.servers.find((server) => server.name === name);
  }

  configured(name: string): TargetSettings | undefined {
    return this.current.targets.find((target) => target.name === name);
  }

  /** The target the panel's routes act on: `default`, or the only target there is. */
  defaultTargetName(): string | undefined {
    if (this.configured('default')) return 'default';
    const concrete = this.current.targets.filter((target) => target.database !== null);
    return this.current.targets.length === 1 && concrete.length === 1
      ? concrete[0]?.name
      : undefined;
  }

  /** Whether a configured (non-discovery) target already covers `database` on `server`. */
  private coveredByName(server: string, database: string): boolean {
    return this.current.targets.some(
      (target) => target.server === server && target.database === database,
    );
  }

  resolve(name: string): ResolvedTarget | undefined {
    const configured = this.configured(name);
    if (configured && configured.database !== null) {
      return this.build(configured, configured.name, configured.database);
    }
    const slash = name.indexOf('/');
    if (slash === -1) return undefined;
    const serverName = name.slice(0, slash);
    const database = name.slice(slash + 1);
    if (this.coveredByName(serverName, database)) return undefined;
    const discovery = this.current.targets.find(
      (target) =>
        target.database === null &&
        target.server === serverName &&
        discoveryPicks(target, database),
    );
    return discovery ? this.build(discovery, name, database) : undefined;
  }

  /** Like resolve, but an unknown name is a TARGET_NOT_FOUND error. */
  require(name: string): ResolvedTarget {
    const resolved = this.resolve(name);
    if (!resolved) throw new AppError('TARGET_NOT_FOUND', `target ${name} not found`);
    return resolved;
  }

  private build(configured: TargetSettings, name: string, database: string): ResolvedTarget {
    const server = this.server(configured.server);
    if (!server) throw new AppError('TARGET_NOT_FOUND', `server ${configured.server} not found`);
    return {
      info: {
        name,
        server: server.name,
        maxConcurrentJobs: server.maxConcurrentJobs,
        settings: { ...configured, name, database },
      },
      server,
      database: serverConnection(server, database),
      maintenance: serverConnection(server),
      configured,
    };
  }

  /** The target's backup store (its prefix in each of its destinations), made once. */
  storeFor(target: Pick<TargetInfo, 'name' | 'settings'>): Promise<BackupStore> {
    const key = target.settings.destinations.join(',');
    const cached = this.stores.get(target.name);
    if (cached && cached.key === key) return cached.store;
    // Its directory is made here: a database found after start has none yet. A directory that
    // cannot be made is not an error here: the API still answers (health says what is wrong),
    // and a backup's own write fails with its clear error.
    this.keyRing ??= createKeyRing(this.config);
    const store = this.keyRing
      .then((keyRing) =>
        createBackupStore(this.config, this.logger, {
          target: target.name,
          destinations: target.settings.destinations,
          keyRing,
        }),
      )
      .then(async (created) => {
        await created.ensureDir().catch(() => {});
        return created;
      });
    store.catch(() => this.stores.delete(target.name));
    this.stores.set(target.name, { key, store });
    return store;
  }

  /**
   * The databases a discovery target picks right now, by name (`<server>/<db>` targets), with
   * a short cache (DISCOVERY_CACHE_MS) so a burst of API calls lists the server once.
   */
  async discover(target: TargetSettings): Promise<string[]> {
    if (target.database !== null) return [];
    const cached = this.discovered.get(target.name);
    if (cached && Date.now() - cached.at < this.config.DISCOVERY_CACHE_MS) {
      return cached.databases;
    }
    const databases = this.listDatabasesOf(target);
    databases.catch(() => this.discovered.delete(target.name));
    this.discovered.set(target.name, { at: Date.now(), databases });
    return databases;
  }

  private async listDatabasesOf(target: TargetSettings): Promise<string[]> {
    const server = this.server(target.server);
    if (!server) throw new AppError('TARGET_NOT_FOUND', `server ${target.server} not found`);
    const client = new pg.Client(clientConfig(serverConnection(server), 'pgkeep-discovery'));
    client.on('error', () => {});
    try {
      await client.connect();
    } catch (error) {
      throw new AppError('DATABASE_UNAVAILABLE', `server ${server.name} is not reachable`, {
        retryable: true,
        cause: error,
      });
    }
    try {
      const names = await listDatabases(client);
      return names.filter(
        (database) =>
          discoveryPicks(target, database) && !this.coveredByName(target.server, database),
      );
    } finally {
      await client.end().catch(() => {});
    }
  }

  /** Every target there is now: configured ones, and each database the discovery targets pick. */
  async expand(): Promise<{ targets: ResolvedTarget[]; unreachable: string[] }> {
    const targets: ResolvedTarget[] = [];
    const unreachable: string[] = [];
    for (const configured of this.current.targets) {
      if (configured.database !== null) {
        targets.push(this.build(configured, configured.name, configured.database));
        continue;
      }
      try {
        for (const database of await this.discover(configured)) {
          targets.push(
            this.build(configured, discoveredTargetName(configured.server, database), database),
          );
        }
      } catch (error) {
        this.logger.warn(
          { target: configured.name, err: (error as Error).message },
          'discovery failed',
        );
        unreachable.push(configured.name);
      }
    }
    return { targets, unreachable };
  }
}
