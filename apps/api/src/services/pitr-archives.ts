import { AppError, type Config, type Logger, type ServerSettings } from '@pgkeep/core';
import { WalArchive } from '@pgkeep/engine';
import type { KeyRing } from '@pgkeep/storage';

/** What makes one server's archive differ from another's: its address and its PITR settings. */
const keyOf = (server: ServerSettings) =>
  JSON.stringify({ name: server.name, url: server.url, pitr: server.pitr });

/**
 * The WAL archive of each server with PITR on, opened once and kept (opening makes the catalog
 * directories and the server's stores). The API only reads the catalogs; a server whose address
 * or PITR settings change with a reloaded targets file gets its archive opened again.
 */
export class PitrArchives {
  private readonly archives = new Map<string, { key: string; archive: Promise<WalArchive> }>();

  constructor(
    private readonly config: Config,
    private readonly logger: Logger,
    private readonly keyRing: KeyRing,
  ) {}

  /** The server's archive; an archive that cannot be opened is PITR_UNAVAILABLE (and logged). */
  async open(server: ServerSettings): Promise<WalArchive> {
    const key = keyOf(server);
    const cached = this.archives.get(server.name);
    if (cached?.key === key) return cached.archive;
    const archive = WalArchive.open(this.config, this.logger, server, this.keyRing);
    // A failed open is tried again by the next request, not remembered.
    archive.catch(() => {
      if (this.archives.get(server.name)?.archive === archive) this.archives.delete(server.name);
    });
    this.archives.set(server.name, { key, archive });
    try {
      return await archive;
    } catch (error) {
      this.logger.error({ server: server.name, err: error }, 'WAL archive cannot be opened');
      // The message is sent (503): no path or system error in it, the log has them.
      throw new AppError(
        'PITR_UNAVAILABLE',
        `the WAL archive of server ${server.name} cannot be opened; the API's log says why`,
        { cause: error },
      );
    }
  }

  /** After a reload: archives of servers that are gone or have PITR off are let go. */
  keepOnly(servers: readonly ServerSettings[]): void {
    const wanted = new Set(servers.filter((server) => server.pitr).map((server) => server.name));
    for (const name of this.archives.keys()) {
      if (!wanted.has(name)) this.archives.delete(name);
    }
  }
}
