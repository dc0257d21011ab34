import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { tableKey } from '@pgkeep/core';
import {
  CustomArchiveRowCounter,
  countCopyRows,
  countRows,
  listUserTables,
  readArchiveToc,
  tableOfEntry,
} from '@pgkeep/pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, dropDatabase, urlWithDatabase, withClient } from './support/test-env.js';

/**
 * Row counts read from the COPY data pg_dump writes must equal count(*) in the same data, for
 * every shape of value COPY escapes, for tables of every kind of name, and for the archive's
 * other blocks (large objects) in between. A stream the reader does not understand is reported,
 * never counted as zero.
 */
const run = promisify(execFile);
const serverUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const database = `pgkeep_rowcount_${process.pid}`;
const url = urlWithDatabase(serverUrl, database);
let scratch: string;

beforeAll(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-rowcount-'));
  await createDatabase(serverUrl, database);
  await withClient(url, (client) =>
    client.query(`
      CREATE SCHEMA "odd.schema";
      CREATE TABLE plain (id int PRIMARY KEY, body text);
      INSERT INTO plain SELECT g, 'row ' || g FROM generate_series(1, 5000) g;
      -- Values COPY must escape: newlines, carriage returns, tabs, backslashes, NULLs, \\. alone.
      CREATE TABLE tricky (id int, body text, raw bytea);
      INSERT INTO tricky VALUES
        (1, E'two\\nlines', E'\\\\x0a0a0a'),
        (2, E'cr\\r\\nlf', NULL),
        (3, E'tab\\there', E'\\\\x00'),
        (4, E'back\\\\slash\\\\n', ''),
        (5, NULL, NULL),
        (6, E'\\\\.', E'\\\\x5c2e0a'),
        (7, repeat(E'x\\n', 40000), NULL),
        (8, '', NULL),
        (9, E'ends in \\\\.', NULL);
      -- One text column: '' is an empty line, a value ending in a backslash and a dot is not
      -- the end-of-data marker, even when empty lines follow it.
      CREATE TABLE one_column (v text);
      INSERT INTO one_column VALUES ('first'), (E'a\\.'), (''), ('');
      CREATE TABLE empty_one (id int);
      CREATE TABLE no_columns ();
      INSERT INTO no_columns SELECT FROM generate_series(1, 7);
      CREATE TABLE "odd.schema"."Mixed ""Quoted"" name" (id int);
      INSERT INTO "odd.schema"."Mixed ""Quoted"" name" SELECT generate_series(1, 33);
      CREATE TABLE parted (id int, at date) PARTITION BY RANGE (at);
      CREATE TABLE parted_2025 PARTITION OF parted FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
      CREATE TABLE parted_2026 PARTITION OF parted FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
      INSERT INTO parted SELECT g, date '2025-06-01' + (g % 400) FROM generate_series(1, 1000) g;
      -- Lengths whose int bytes hold a newline (10) and large objects between table data blocks.
      CREATE TABLE ten_bytes (v text);
      INSERT INTO ten_bytes SELECT lpad(g::text, 9, '0') FROM generate_series(1, 300) g;
      SELECT lo_from_bytea(0, convert_to(repeat(E'lo\\n', 5000), 'UTF8'));
      SELECT lo_from_bytea(0, '\\x0a');
    `),
  );
});

afterAll(async () => {
  await dropDatabase(serverUrl, database);
  await rm(scratch, { recursive: true, force: true });
});

async function expectedCounts(): Promise<Record<string, number>> {
  return withClient(url, async (client) => countRows(client, await listUserTables(client)));
}

async function dumpCustom(extra: string[] = []): Promise<Buffer> {
  const file = path.join(scratch, `dump-${extra.join('') || 'plain'}.dump`);
  await run('pg_dump', ['--format=custom', '--compress=0', ...extra, '--file', file, url]);
  return readFile(file);
}

function countIn(archive: Buffer, chunkSizes: (i: number) => number) {
  const counter = new CustomArchiveRowCounter();
  let at = 0;
  for (let i = 0; at < archive.length; i++) {
    const size = Math.max(1, chunkSizes(i));
    counter.push(archive.subarray(at, at + size));
    at += size;
  }
  return counter.result();
}

function asRecord(result: ReturnType<CustomArchiveRowCounter['result']>) {
  if (!result.ok) throw new Error(result.reason);
  return Object.fromEntries([...result.rows].map(([key, value]) => [key, value.rows]));
}

describe('rows counted from the COPY data of a custom-format archive', () => {
  it('equal count(*) for every table, whatever the chunking', async () => {
    const expected = await expectedCounts();
    expect(expected['public.tricky']).toBe(9);
    expect(expected['public.one_column']).toBe(4);
    expect(expected['odd.schema.Mixed "Quoted" name']).toBe(33);
    const archive = await dumpCustom();
    expect(asRecord(countIn(archive, () => 65_536))).toEqual(expected);
    // Every boundary lands in a different place: 1-byte chunks split every int and header.
    expect(asRecord(countIn(archive, () => 1))).toEqual(expected);
    let seed = 7;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return seed % 9000;
    };
    expect(asRecord(countIn(archive, random))).toEqual(expected);
  });

  it('counts a table-only archive, and only its tables', async () => {
    const archive = await dumpCustom(['--table=public.tricky', '--table=public.ten_bytes']);
    expect(asRecord(countIn(archive, () => 4096))).toEqual({
      'public.tricky': 9,
      'public.ten_bytes': 300,
    });
  });

  it('reports a cut, compressed or foreign stream instead of counting it', async () => {
    const archive = await dumpCustom();
    const cut = countIn(archive.subarray(0, archive.length - 3), () => 65_536);
    expect(cut).toEqual({ ok: false, reason: 'the archive ended inside a data block' });
    const compressed = await dumpCustom(['--compress=1']);
    expect(countIn(compressed, () => 65_536)).toEqual({
      ok: false,
      reason: 'the archive data is compressed',
    });
    const sql = Buffer.from('--\n-- PostgreSQL database dump\n--\n');
    expect(countIn(sql, () => 10)).toEqual({
      ok: false,
      reason: 'not a pg_dump archive (no PGDMP magic)',
    });
    // A block type that is neither table data nor large objects is damage, not data.
    const damaged = Buffer.from(archive);
    const { end } = readArchiveToc(archive);
    expect(damaged[end]).toBe(1);
    damaged[end] = 9;
    expect(countIn(damaged, () => 65_536)).toEqual({
      ok: false,
      reason: 'unknown data block type 9',
    });
    expect(countIn(archive.subarray(0, end - 1), () => 65_536)).toEqual({
      ok: false,
      reason: 'the archive ended inside its table of contents',
    });
  });
});

describe('a directory-format dump', () => {
  it('names each table data file in toc.dat, and its newlines are the rows', async () => {
    const directory = path.join(scratch, 'dir-dump');
    await run('pg_dump', [
      '--format=directory',
      '--compress=0',
      '--jobs=2',
      '--file',
      directory,
      url,
    ]);
    const { header, entries } = readArchiveToc(await readFile(path.join(directory, 'toc.dat')));
    // toc.dat says "tar" (3): a directory dump shares its layout.
    expect(header.format).toBe(3);
    const counts: Record<string, number> = {};
    for (const entry of entries) {
      const table = tableOfEntry(entry);
      if (!table || !entry.filename) continue;
      counts[tableKey(table)] = countCopyRows(await readFile(path.join(directory, entry.filename)));
    }
    expect(counts).toEqual(await expectedCounts());
  });
});
