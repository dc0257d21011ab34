import { type BackupManifest, type Logger, parseTableName, tableKey } from '@pgkeep/core';
import { type ArchiveTocEntry, countTableRows, readArchiveTocFile, tableOfEntry } from '@pgkeep/pg';
import type pg from 'pg';
import { compareRowCounts } from './restore-steps.js';

export interface CheckedRowCounts {
  actual: Record<string, number>;
  mismatches: string[];
  /** Tables counted while pg_restore was still loading others. */
  countedDuringLoad: string[];
}

/** A session the counts run on, ended by `close`. */
export type CountSession = pg.ClientBase & { end(): Promise<void> };

/**
 * The row counts a restore checks against the manifest, each table counted as soon as
 * pg_restore -j reports its data finished (committed), on a session of its own, while the
 * load goes on with other tables, index builds and constraints. What is left when the load
 * ends (pg_restore -j 1, which reports no finished entries; a table whose count failed) is
 * counted then, as before. Where cores are idle during the load (more of them than pg_restore's
 * jobs, or a tail of one index build), the counts use them and the check after the load is
 * short; on cores the load already fills they take the same time, only earlier.
 *
 * A table's count is final once its TABLE DATA entry is: its rows come from that entry alone
 * (pgkeep's pg_dump never loads through a partition root), and the triggers and rules that
 * could add rows are created after all the data.
 */
export class RowCountsDuringLoad {
  /** TABLE DATA entries of the manifest's tables, by dump id. */
  private readonly tableOfItem = new Map<number, string>();
  private readonly counted = new Map<string, number>();
  private queue: Promise<void> = Promise.resolve();
  /** The session of the counts; connected at the first, replaced when it fails. */
  private session: Promise<CountSession> | null = null;
  /** A count failed during the load: the rest wait for the end, on a new session. */
  private broken = false;
  /** Closed by the restore: nothing more is counted, no session is opened. */
  private closed = false;

  constructor(
    private readonly connect: () => Promise<CountSession>,
    private readonly expected: Record<string, number>,
    entries: readonly ArchiveTocEntry[],
  ) {
    for (const entry of entries) {
      const table = tableOfEntry(entry);
      if (!table) continue;
      const key = tableKey(table);
      if (Object.hasOwn(expected, key)) this.tableOfItem.set(entry.dumpId, key);
    }
  }

  /** pg_restore finished the entry `dumpId` (its `onItemFinished`). */
  itemFinished(dumpId: number): void {
    const key = this.tableOfItem.get(dumpId);
    if (key === undefined) return;
    this.tableOfItem.delete(dumpId);
    // One count at a time on the session, in the order the tables finished.
    this.queue = this.queue.then(async () => {
      if (this.broken || this.closed) return;
      try {
        const client = await this.client();
        this.counted.set(key, await countTableRows(client, parseTableName(key)));
      } catch {
        // The session may be gone (a restart, idle_session_timeout during a long load): this
        // table and the ones after it are counted once the load is over, on a new session.
        this.broken = true;
        await this.endSession();
      }
    });
  }

  /** Once pg_restore has exited well: every table's count against the manifest. */
  async check(): Promise<CheckedRowCounts> {
    await this.queue;
    const known = Object.fromEntries(this.counted);
    // A session idle through a long load may have been ended meanwhile: tried, and replaced.
    const client = await this.client();
    const alive = await client.query('SELECT 1').then(
      () => true,
      () => false,
    );
    const { actual, mismatches } = await compareRowCounts(
      alive ? client : await this.reconnect(),
      this.expected,
      known,
    );
    return { actual, mismatches, countedDuringLoad: Object.keys(known) };
  }

  /** Ends the session for good (before the swap, which renames the database). */
  async close(): Promise<void> {
    this.closed = true;
    await this.endSession();
  }

  private async endSession(): Promise<void> {
    const session = this.session;
    this.session = null;
    if (session) {
      await session.then(
        (client) => client.end().catch(() => {}),
        () => {},
      );
    }
  }

  private client(): Promise<CountSession> {
    if (this.closed) return Promise.reject(new Error('the row counts were closed'));
    this.session ??= this.connect();
    return this.session;
  }

  private async reconnect(): Promise<CountSession> {
    await this.endSession();
    return this.client();
  }
}

/**
 * A RowCountsDuringLoad for the archive that `file` holds: its table of contents maps pg_restore's
 * finished entries to tables. Plain SQL, or a table of contents that cannot be read: every table
 * is counted after the load.
 */
export async function rowCountsDuringLoad(
  connect: () => Promise<CountSession>,
  manifest: Pick<BackupManifest, 'format' | 'rowCounts'>,
  file: string,
  log: Pick<Logger, 'debug'>,
): Promise<RowCountsDuringLoad> {
  let entries: ArchiveTocEntry[] = [];
  if (manifest.format !== 'plain') {
    try {
      entries = (await readArchiveTocFile(file)).entries;
    } catch (error) {
      log.debug({ err: error }, 'table of contents not read: the rows are counted after the load');
    }
  }
  return new RowCountsDuringLoad(connect, manifest.rowCounts, entries);
}
