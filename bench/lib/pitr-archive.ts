import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { type ArchivedWal, walEntrySchema } from '@pgkeep/core';
import { sleep } from './util.js';

/**
 * What the PITR section reads of pgkeep's WAL archive: the catalog pgkeep keeps locally
 * (`BACKUP_DIR/pitr/<server>/catalog/wal-catalog.jsonl`, a line per archived or removed file)
 * and where each archived file is (`BACKUP_DIR/pitr/<server>/<file>` on the local destination).
 */
export class ArchiveView {
  readonly root: string;

  constructor(backupDir: string, server: string) {
    this.root = path.join(backupDir, 'pitr', server);
  }

  get catalogFile(): string {
    return path.join(this.root, 'catalog', 'wal-catalog.jsonl');
  }

  /** The archived files now, by name (a `removed` line takes its file out). */
  async archived(): Promise<Map<string, ArchivedWal>> {
    const live = new Map<string, ArchivedWal>();
    const text = await readFile(this.catalogFile, 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      if (!line) continue;
      const entry = walEntrySchema.parse(JSON.parse(line));
      if (entry.op === 'archived') live.set(entry.name, entry);
      else live.delete(entry.name);
    }
    return live;
  }

  /** Segments (not history files) in WAL order. */
  async segments(): Promise<ArchivedWal[]> {
    return [...(await this.archived()).values()]
      .filter((entry) => /^[0-9A-F]{24}$/.test(entry.name))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  fileOf(entry: ArchivedWal): string {
    return path.join(this.root, entry.filename);
  }

  /** Bounded poll of the catalog until it holds `name`. */
  async waitFor(name: string, timeoutMs = 120_000): Promise<ArchivedWal> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const entry = (await this.archived()).get(name);
      if (entry) return entry;
      if (Date.now() > deadline) throw new Error(`WAL segment ${name} was not archived in time`);
      await sleep(200);
    }
  }
}

/** Sums of the catalog's sizes over some entries. */
export function archivedBytes(entries: readonly ArchivedWal[]) {
  return {
    segments: entries.length,
    walBytes: entries.reduce((sum, entry) => sum + entry.walSize, 0),
    storedBytes: entries.reduce((sum, entry) => sum + entry.size, 0),
  };
}
