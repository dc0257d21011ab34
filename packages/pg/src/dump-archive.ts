import { open, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { type QualifiedTable, tableKey } from '@pgkeep/core';

/**
 * pg_dump's archive format, read as it streams: enough of it to count the rows of every table's
 * COPY data, so a backup's exact row counts come from the bytes it stores rather than from a
 * second scan of every table while pg_dump runs.
 *
 * The layout (src/bin/pg_dump/pg_backup_archiver.c, pg_backup_custom.c, pg_backup_directory.c):
 * - header: "PGDMP", version (major, minor, revision), int size, offset size, format, compression
 *   (an int before 1.15, one byte from 1.15), the creation time (7 ints), 3 strings;
 * - the table of contents: a count, then per entry its dump id, a data flag, 2 oid strings,
 *   tag, desc, section, defn, drop, copy statement, namespace, tablespace, table access method
 *   (1.14+), relkind (1.16+), owner, "false", dependency strings ending with a null string, and
 *   the format's own extra (custom: a state byte and an offset; directory: a file name);
 * - custom format only, the data: blocks of a type byte (1 table data, 3 large objects) and the
 *   entry's dump id, then chunks (an int length, the bytes) ending with a zero length. Large
 *   objects are (oid, chunks…) pairs ending with oid 0.
 * An int is a sign byte then `intSize` bytes, least significant first; a string is an int
 * length (-1 for null) then the bytes.
 *
 * COPY's text format escapes newlines inside values (`\n`), so in table data every newline byte
 * ends exactly one row, except those of the end-of-data marker pg_dump (up to 16 at least)
 * writes after the rows: a line `\.` and two empty lines. No row is the line `\.` (COPY
 * writes a backslash in a value as `\\`), so the marker is recognised by its bytes at a line's
 * start; a table of no columns, whose rows are empty lines, still counts right.
 */

export interface ArchiveTocEntry {
  dumpId: number;
  hasData: boolean;
  desc: string;
  tag: string;
  namespace: string | null;
  /** Directory format: the entry's data file in the dump's directory ("" when it has none). */
  filename: string | null;
}

export interface ArchiveHeader {
  version: [number, number, number];
  intSize: number;
  offSize: number;
  /** 1 custom, 3 tar, 5 directory (pg_backup.h's ArchiveFormat). */
  format: number;
  /** 0 when the data is stored as written (what the counts need). */
  compression: number;
}

const FORMAT_CUSTOM = 1;
/** A directory dump's toc.dat says "tar": the two share their TOC layout. */
const FORMAT_TAR = 3;
const FORMAT_DIRECTORY = 5;
const BLK_DATA = 1;
const BLK_BLOBS = 3;
/** The archive versions whose layout this reader knows: 1.12 (PostgreSQL 11) to 1.16 (17). */
const MIN_VERSION = 0x010c00;
const MAX_VERSION = 0x011000;

/** Thrown inside a read when the bytes so far end before the item does. */
const NEED_MORE = Symbol('need more bytes');

export class ArchiveFormatError extends Error {
  override name = 'ArchiveFormatError';
}

/** Reads items from one buffer; throws NEED_MORE at its end, ArchiveFormatError on nonsense. */
class Reader {
  pos = 0;
  intSize = 4;
  constructor(readonly buf: Buffer) {}

  byte(): number {
    if (this.pos >= this.buf.length) throw NEED_MORE;
    return this.buf[this.pos++] as number;
  }

  bytes(length: number): Buffer {
    if (this.pos + length > this.buf.length) throw NEED_MORE;
    const out = this.buf.subarray(this.pos, this.pos + length);
    this.pos += length;
    return out;
  }

  int(): number {
    if (this.pos + 1 + this.intSize > this.buf.length) throw NEED_MORE;
    const sign = this.buf[this.pos++] as number;
    let value = 0;
    let factor = 1;
    for (let i = 0; i < this.intSize; i++) {
      value += (this.buf[this.pos++] as number) * factor;
      factor *= 256;
    }
    if (!Number.isSafeInteger(value)) throw new ArchiveFormatError('integer out of range');
    return sign ? -value : value;
  }

  string(): string | null {
    const length = this.int();
    if (length < 0) return null;
    if (length > 1 << 30) throw new ArchiveFormatError(`string of ${length} bytes`);
    return this.bytes(length).toString('utf8');
  }
}

function readHeader(reader: Reader): ArchiveHeader {
  if (reader.bytes(5).toString('latin1') !== 'PGDMP') {
    throw new ArchiveFormatError('not a pg_dump archive (no PGDMP magic)');
  }
  const version: [number, number, number] = [reader.byte(), reader.byte(), reader.byte()];
  const numeric = (version[0] << 16) | (version[1] << 8) | version[2];
  if (numeric < MIN_VERSION || numeric >= MAX_VERSION + 0x100) {
    throw new ArchiveFormatError(`archive version ${version.join('.')} is not supported`);
  }
  const intSize = reader.byte();
  const offSize = reader.byte();
  if (intSize < 1 || intSize > 8 || offSize < 1 || offSize > 8) {
    throw new ArchiveFormatError(`integer sizes ${intSize}/${offSize}`);
  }
  reader.intSize = intSize;
  const format = reader.byte();
  const compression = numeric >= 0x010f00 ? reader.byte() : reader.int();
  for (let i = 0; i < 7; i++) reader.int(); // creation time
  reader.string(); // database
  reader.string(); // server version
  reader.string(); // pg_dump version
  return { version, intSize, offSize, format, compression };
}

function readTocEntry(reader: Reader, header: ArchiveHeader): ArchiveTocEntry {
  const numeric = (header.version[0] << 16) | (header.version[1] << 8) | header.version[2];
  const dumpId = reader.int();
  if (dumpId <= 0) throw new ArchiveFormatError(`entry id ${dumpId} out of range`);
  const hasData = reader.int() !== 0;
  reader.string(); // tableoid
  reader.string(); // oid
  const tag = reader.string() ?? '';
  const desc = reader.string() ?? '';
  reader.int(); // section
  reader.string(); // defn
  reader.string(); // drop statement
  reader.string(); // copy statement
  const namespace = reader.string();
  reader.string(); // tablespace
  if (numeric >= 0x010e00) reader.string(); // table access method
  if (numeric >= 0x011000) reader.int(); // relkind
  reader.string(); // owner
  reader.string(); // "false" (with oids)
  for (let guard = 0; ; guard++) {
    if (reader.string() === null) break;
    if (guard > 1_000_000) throw new ArchiveFormatError('dependency list does not end');
  }
  let filename: string | null = null;
  if (header.format === FORMAT_CUSTOM) {
    reader.byte(); // data state
    reader.bytes(header.offSize); // data offset
  } else if (header.format === FORMAT_DIRECTORY || header.format === FORMAT_TAR) {
    filename = reader.string();
  } else {
    throw new ArchiveFormatError(`archive format ${header.format} is not supported`);
  }
  return { dumpId, hasData, desc, tag, namespace, filename };
}

interface ArchiveToc {
  header: ArchiveHeader;
  entries: ArchiveTocEntry[];
  /** Where the table of contents ends (a custom archive's data starts there). */
  end: number;
}

/** The header and table of contents of a whole buffer (a directory dump's toc.dat). */
export function readArchiveToc(buf: Buffer): ArchiveToc {
  const toc = readTocFrom(buf);
  if (!toc) throw new ArchiveFormatError('the table of contents is cut short');
  return toc;
}

/** As readArchiveToc; null when `buf` ends before the table of contents does. */
function readTocFrom(buf: Buffer): ArchiveToc | null {
  const reader = new Reader(buf);
  try {
    const header = readHeader(reader);
    const count = reader.int();
    const entries: ArchiveTocEntry[] = [];
    for (let i = 0; i < count; i++) entries.push(readTocEntry(reader, header));
    return { header, entries, end: reader.pos };
  } catch (error) {
    if (error === NEED_MORE) return null;
    throw error;
  }
}

/** The most of a custom archive's start read for its table of contents (bounds the memory). */
const MAX_TOC_BYTES = 32 * 1024 * 1024;

/**
 * The table of contents of an archive on disk: a custom-format file (read from its start, as
 * far as the table of contents goes, at most MAX_TOC_BYTES) or a directory-format dump's
 * directory (its toc.dat).
 */
export async function readArchiveTocFile(file: string): Promise<ArchiveToc> {
  if ((await stat(file)).isDirectory()) {
    return readArchiveToc(await readFile(path.join(file, 'toc.dat')));
  }
  const handle = await open(file, 'r');
  try {
    const size = (await handle.stat()).size;
    for (let length = 256 * 1024; ; length *= 4) {
      const buf = Buffer.alloc(Math.min(length, size, MAX_TOC_BYTES));
      const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
      const toc = readTocFrom(buf.subarray(0, bytesRead));
      if (toc) return toc;
      if (bytesRead >= size) throw new ArchiveFormatError('the table of contents is cut short');
      if (bytesRead >= MAX_TOC_BYTES) {
        throw new ArchiveFormatError(`the table of contents is longer than ${MAX_TOC_BYTES} bytes`);
      }
    }
  } finally {
    await handle.close();
  }
}

/**
 * Newlines in `buf[start, end)`: memchr through indexOf, about 0.15 s per GB of 100-byte rows.
 * The last search may look past `end`, up to the next newline (the next row's end).
 */
export function countNewlines(buf: Buffer, start = 0, end = buf.length): number {
  let count = 0;
  let at = buf.indexOf(10, start);
  while (at !== -1 && at < end) {
    count++;
    at = buf.indexOf(10, at + 1);
  }
  return count;
}

const MARKER = [0x5c, 0x2e, 0x0a, 0x0a, 0x0a]; // "\\.\n\n\n"

/** The rows of one table's COPY data, fed in pieces: its newlines less the end-of-data marker. */
export class CopyRowTally {
  private newlines = 0;
  private bytes = 0;
  /** The last piece when it held 6 bytes or more (kept by reference: no copy per row). */
  private lastBuf: Buffer | null = null;
  private lastEnd = 0;
  /** Otherwise the last (up to) 6 bytes, copied. */
  private readonly tail = Buffer.alloc(6);
  private tailLength = 0;

  push(buf: Buffer, start = 0, end = buf.length): void {
    if (end <= start) return;
    // A row is mostly one piece ending in its newline: one search finds it.
    const first = buf.indexOf(10, start);
    if (first !== -1 && first < end) {
      this.newlines += first === end - 1 ? 1 : countNewlines(buf, start, end);
    }
    this.bytes += end - start;
    if (end - start >= 6) {
      this.lastBuf = buf;
      this.lastEnd = end;
      return;
    }
    // A short piece: the tail is made of it and what came before.
    const length = end - start;
    const keep = 6 - length;
    const previous = this.lastBytes();
    const carried = previous.subarray(Math.max(0, previous.length - keep));
    carried.copy(this.tail, 0);
    buf.copy(this.tail, carried.length, start, end);
    this.tailLength = carried.length + length;
    this.lastBuf = null;
  }

  private lastBytes(): Buffer {
    if (this.lastBuf) return this.lastBuf.subarray(this.lastEnd - 6, this.lastEnd);
    return Buffer.from(this.tail.subarray(0, this.tailLength));
  }

  rows(): number {
    const tail = this.lastBytes();
    const n = tail.length;
    if (n < 5) return this.newlines;
    for (let i = 0; i < 5; i++) if (tail[n - 5 + i] !== MARKER[i]) return this.newlines;
    const atLineStart = this.bytes === 5 || (n === 6 && tail[0] === 0x0a);
    return atLineStart ? this.newlines - 3 : this.newlines;
  }
}

/** The rows of a whole table data file (a directory dump's `<id>.dat`, uncompressed). */
export function countCopyRows(buf: Buffer): number {
  const tally = new CopyRowTally();
  tally.push(buf);
  return tally.rows();
}

/** The table a TABLE DATA entry fills, or null for any other entry. */
export function tableOfEntry(entry: ArchiveTocEntry): QualifiedTable | null {
  if (entry.desc !== 'TABLE DATA' || entry.namespace === null) return null;
  return { schema: entry.namespace, name: entry.tag };
}

type DataState =
  | 'block-type'
  | 'block-id'
  | 'chunk-length'
  | 'chunk-data'
  | 'blob-oid'
  | 'blob-chunk-length'
  | 'blob-chunk-data';

/**
 * Counts the rows of each table in a custom-format archive (`pg_dump -Fc --compress=0`) fed to
 * it chunk by chunk, as pg_dump writes it. It never throws: a stream it cannot read (another
 * version, compressed data, damage) makes `result()` say why, and the caller counts another way.
 */
export class CustomArchiveRowCounter {
  private failure: string | null = null;
  private header: ArchiveHeader | null = null;
  private tocRemaining = -1;
  private readonly entries = new Map<number, ArchiveTocEntry>();
  /** Bytes of the header and table of contents not parsed yet. */
  private pending: Buffer = Buffer.alloc(0);
  private inToc = true;
  private state: DataState = 'block-type';
  private intSize = 4;
  /** A multi-byte int being read across chunks. */
  private intBytes = -1;
  private intValue = 0;
  private intFactor = 1;
  private intNegative = false;
  private dataRemaining = 0;
  private currentId = 0;
  /** The block being read holds large objects, not rows. */
  private inBlobs = false;
  private tally = new CopyRowTally();
  private readonly rows = new Map<number, number>();
  bytes = 0;

  push(chunk: Buffer): void {
    if (this.failure !== null) return;
    this.bytes += chunk.length;
    try {
      if (this.inToc) {
        this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
        const rest = this.readToc();
        if (rest === null) return;
        this.pending = Buffer.alloc(0);
        this.inToc = false;
        this.readData(rest);
      } else {
        this.readData(chunk);
      }
    } catch (error) {
      this.failure = error instanceof Error ? error.message : String(error);
    }
  }

  /** Parses what it can of the header and TOC; the bytes after the TOC, or null if not there. */
  private readToc(): Buffer | null {
    const reader = new Reader(this.pending);
    reader.intSize = this.intSize;
    let committed = 0;
    try {
      if (!this.header) {
        this.header = readHeader(reader);
        this.intSize = this.header.intSize;
        if (this.header.format !== FORMAT_CUSTOM) {
          throw new ArchiveFormatError(`archive format ${this.header.format} is not custom`);
        }
        if (this.header.compression !== 0) {
          throw new ArchiveFormatError('the archive data is compressed');
        }
        committed = reader.pos;
      }
      if (this.tocRemaining < 0) {
        this.tocRemaining = reader.int();
        committed = reader.pos;
      }
      while (this.tocRemaining > 0) {
        const entry = readTocEntry(reader, this.header);
        this.entries.set(entry.dumpId, entry);
        this.tocRemaining--;
        committed = reader.pos;
      }
      return this.pending.subarray(reader.pos);
    } catch (error) {
      if (error !== NEED_MORE) throw error;
      this.pending = this.pending.subarray(committed);
      return null;
    }
  }

  /**
   * Reads an int whose bytes start at `pos`, possibly across chunks. Returns the position after
   * it, or -1 when the chunk ended first (the int is finished by the next chunk).
   */
  private readInt(buf: Buffer, pos: number): number {
    let at = pos;
    if (this.intBytes < 0) {
      if (at + 1 + this.intSize <= buf.length) {
        // The whole int is here: the common case.
        const negative = buf[at++] !== 0;
        let value = 0;
        let factor = 1;
        for (let i = 0; i < this.intSize; i++) {
          value += (buf[at++] as number) * factor;
          factor *= 256;
        }
        this.intValue = negative ? -value : value;
        return at;
      }
      if (at >= buf.length) return -1;
      this.intNegative = buf[at++] !== 0;
      this.intBytes = 0;
      this.intValue = 0;
      this.intFactor = 1;
    }
    while (this.intBytes < this.intSize) {
      if (at >= buf.length) return -1;
      this.intValue += (buf[at++] as number) * this.intFactor;
      this.intFactor *= 256;
      this.intBytes++;
    }
    if (this.intNegative) this.intValue = -this.intValue;
    this.intBytes = -1;
    return at;
  }

  private readData(buf: Buffer): void {
    let pos = 0;
    const end = buf.length;
    while (pos < end) {
      switch (this.state) {
        case 'block-type': {
          const type = buf[pos++] as number;
          if (type !== BLK_DATA && type !== BLK_BLOBS) {
            throw new ArchiveFormatError(`unknown data block type ${type}`);
          }
          this.inBlobs = type === BLK_BLOBS;
          this.state = 'block-id';
          break;
        }
        case 'block-id': {
          const next = this.readInt(buf, pos);
          if (next < 0) return;
          pos = next;
          if (!this.entries.has(this.intValue)) {
            throw new ArchiveFormatError(`data block for unknown entry ${this.intValue}`);
          }
          if (this.inBlobs) {
            this.state = 'blob-oid';
          } else {
            this.currentId = this.intValue;
            this.tally = new CopyRowTally();
            this.state = 'chunk-length';
          }
          break;
        }
        case 'chunk-length': {
          const next = this.readInt(buf, pos);
          if (next < 0) return;
          pos = next;
          if (this.intValue < 0) throw new ArchiveFormatError('negative chunk length');
          if (this.intValue === 0) {
            this.rows.set(this.currentId, (this.rows.get(this.currentId) ?? 0) + this.tally.rows());
            this.state = 'block-type';
          } else {
            this.dataRemaining = this.intValue;
            this.state = 'chunk-data';
          }
          break;
        }
        case 'chunk-data': {
          const take = Math.min(this.dataRemaining, end - pos);
          this.tally.push(buf, pos, pos + take);
          pos += take;
          this.dataRemaining -= take;
          if (this.dataRemaining === 0) this.state = 'chunk-length';
          break;
        }
        case 'blob-oid': {
          const next = this.readInt(buf, pos);
          if (next < 0) return;
          pos = next;
          this.state = this.intValue === 0 ? 'block-type' : 'blob-chunk-length';
          break;
        }
        case 'blob-chunk-length': {
          const next = this.readInt(buf, pos);
          if (next < 0) return;
          pos = next;
          if (this.intValue < 0) throw new ArchiveFormatError('negative chunk length');
          if (this.intValue === 0) this.state = 'blob-oid';
          else {
            this.dataRemaining = this.intValue;
            this.state = 'blob-chunk-data';
          }
          break;
        }
        case 'blob-chunk-data': {
          const take = Math.min(this.dataRemaining, end - pos);
          pos += take;
          this.dataRemaining -= take;
          if (this.dataRemaining === 0) this.state = 'blob-chunk-length';
          break;
        }
      }
    }
  }

  /**
   * After the whole archive: the rows of each table whose data it holds, keyed by table, or the
   * reason the stream could not be read. Entries that announce data but have no block count as
   * unknown (left out), never as zero.
   */
  result():
    | { ok: true; rows: Map<string, { table: QualifiedTable; rows: number }> }
    | { ok: false; reason: string } {
    if (this.failure !== null) return { ok: false, reason: this.failure };
    if (this.inToc) return { ok: false, reason: 'the archive ended inside its table of contents' };
    if (this.state !== 'block-type' || this.intBytes >= 0) {
      return { ok: false, reason: 'the archive ended inside a data block' };
    }
    const rows = new Map<string, { table: QualifiedTable; rows: number }>();
    for (const [dumpId, count] of this.rows) {
      const entry = this.entries.get(dumpId);
      const table = entry ? tableOfEntry(entry) : null;
      if (!table) continue;
      rows.set(tableKey(table), { table, rows: count });
    }
    return { ok: true, rows };
  }
}
