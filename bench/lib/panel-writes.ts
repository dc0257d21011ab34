import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { SENTENCE_COUNT, sentences } from '../generate-dataset.js';
import { sleep } from './util.js';

/**
 * The panel's writes, as the PITR section drives them: messages arrive (an INSERT of a few
 * rows per transaction) and a few recent ones change status (SENT → DELIVERED → READ, an
 * UPDATE of their status and times). Every value comes from a row counter, so two runs write
 * the same rows; `metadata.phase` says which part of the run wrote a row, so a restored
 * database shows which writes it holds.
 */

export interface WriteCounts {
  rows: number;
  updates: number;
  transactions: number;
}

const INSERT = `
  INSERT INTO "WhatsappMessage" ("userId", direction, status, "fromNumber", "toNumber", body, metadata, "createdAt")
  SELECT t.u,
         CASE WHEN t.k % 2 = 0 THEN 'INBOUND' ELSE 'OUTBOUND' END::"MessageDirection",
         'SENT',
         '+55' || (11900000000 + t.u)::text,
         '+5511' || (30000000 + t.k % 1000)::text,
         t.b,
         jsonb_build_object('waId', 'wamid.bench' || t.k, 'type', 'text', 'phase', $4::text),
         clock_timestamp()
  FROM unnest($1::bigint[], $2::int[], $3::text[]) AS t(k, u, b)
  RETURNING id`;

const UPDATE = `
  UPDATE "WhatsappMessage"
  SET status = CASE WHEN status = 'SENT' THEN 'DELIVERED' ELSE 'READ' END::"MessageStatus",
      "deliveredAt" = coalesce("deliveredAt", clock_timestamp()),
      "readAt" = CASE WHEN status = 'SENT' THEN NULL ELSE clock_timestamp() END
  WHERE id = ANY($1::bigint[])`;

export class PanelWriter {
  private readonly texts = sentences();
  private next = 0;
  /** Ids inserted lately: the ones a status update picks from. */
  private recent: string[] = [];
  readonly counts: WriteCounts = { rows: 0, updates: 0, transactions: 0 };

  private constructor(
    private readonly client: pg.Client,
    private readonly users: number,
    /** Where this writer's row counter starts: writers side by side never repeat a row. */
    private readonly offset: number,
  ) {}

  static async connect(url: string, users: number, offset = 0): Promise<PanelWriter> {
    const client = new pg.Client({ connectionString: url, application_name: 'bench-panel-writes' });
    client.on('error', () => {});
    await client.connect();
    return new PanelWriter(client, users, offset);
  }

  /**
   * Off: a commit returns before its WAL is flushed. The WAL is the same (the same records,
   * flushed by the WAL writer instead); only the wait for the disk goes.
   */
  async synchronousCommit(on: boolean): Promise<void> {
    await this.client.query(`SET synchronous_commit = ${on ? 'on' : 'off'}`);
  }

  /** `rows` new messages in one transaction, then `updates` of recent ones in another. */
  async batch(rows: number, updates: number, phase: string): Promise<void> {
    const keys: number[] = [];
    const users: number[] = [];
    const bodies: string[] = [];
    for (let i = 0; i < rows; i += 1) {
      const k = this.offset + this.next;
      this.next += 1;
      keys.push(k);
      users.push(1 + ((k * 7919) % this.users));
      const pick = (n: number) => this.texts[(k * 31 + n * 977) % SENTENCE_COUNT] ?? '';
      bodies.push((pick(1) + pick(2) + pick(3) + pick(4)).slice(0, 100 + (k % 201)));
    }
    const inserted = await this.client.query<{ id: string }>(INSERT, [keys, users, bodies, phase]);
    this.counts.rows += inserted.rowCount ?? 0;
    this.counts.transactions += 1;
    this.recent.push(...inserted.rows.map((row) => row.id));
    if (this.recent.length > 200) this.recent = this.recent.slice(-200);
    if (updates > 0 && this.recent.length > 0) {
      const ids = Array.from(
        { length: updates },
        (_, i) => this.recent[(this.next * 13 + i * 37) % this.recent.length] as string,
      );
      const updated = await this.client.query(UPDATE, [ids]);
      this.counts.updates += updated.rowCount ?? 0;
      this.counts.transactions += 1;
    }
  }

  /**
   * This session's pending statistics (its WAL among them) reach pg_stat_wal before this
   * returns: the backend flushes them when it goes idle, before it answers ReadyForQuery.
   */
  async flushStats(): Promise<void> {
    await this.client.query('SELECT pg_stat_force_next_flush()');
  }

  async end(): Promise<void> {
    await this.client.end().catch(() => {});
  }
}

export interface PacedOutcome extends WriteCounts {
  ms: number;
  /** Ticks that started later than one tick after their time (the load fell behind). */
  lateTicks: number;
}

/**
 * `rowsPerSecond` messages a second for `seconds`, in ticks of `tickMs` (each tick one batch of
 * rowsPerSecond × tickMs / 1000 rows and `updatesPerTick` updates). A tick that is late starts
 * at once, so the rate holds on average as long as the server keeps up.
 */
export async function pacedWrites(
  writer: PanelWriter,
  options: {
    seconds: number;
    rowsPerSecond: number;
    updatesPerTick: number;
    tickMs: number;
    phase: string;
  },
): Promise<PacedOutcome> {
  const before = { ...writer.counts };
  const perTick = Math.max(1, Math.round((options.rowsPerSecond * options.tickMs) / 1000));
  const ticks = Math.round((options.seconds * 1000) / options.tickMs);
  const started = performance.now();
  let lateTicks = 0;
  for (let tick = 0; tick < ticks; tick += 1) {
    const due = started + tick * options.tickMs;
    const now = performance.now();
    if (now < due) await sleep(due - now);
    else if (now - due > options.tickMs) lateTicks += 1;
    await writer.batch(perTick, options.updatesPerTick, options.phase);
  }
  // The last tick's time is its own: the load lasts its ticks, not the last batch's end.
  const end = Math.max(performance.now(), started + ticks * options.tickMs);
  return {
    ms: end - started,
    lateTicks,
    rows: writer.counts.rows - before.rows,
    updates: writer.counts.updates - before.updates,
    transactions: writer.counts.transactions - before.transactions,
  };
}

/** Batches back to back from every writer until `done()` says so (checked between batches). */
export async function unpacedWrites(
  writers: PanelWriter[],
  options: { rows: number; updates: number; phase: string; done: () => boolean },
): Promise<WriteCounts & { ms: number }> {
  const sum = () =>
    writers.reduce(
      (total, writer) => ({
        rows: total.rows + writer.counts.rows,
        updates: total.updates + writer.counts.updates,
        transactions: total.transactions + writer.counts.transactions,
      }),
      { rows: 0, updates: 0, transactions: 0 },
    );
  const before = sum();
  const started = performance.now();
  await Promise.all(
    writers.map(async (writer) => {
      while (!options.done()) await writer.batch(options.rows, options.updates, options.phase);
    }),
  );
  const after = sum();
  return {
    ms: performance.now() - started,
    rows: after.rows - before.rows,
    updates: after.updates - before.updates,
    transactions: after.transactions - before.transactions,
  };
}

/** The server's WAL insert position, in bytes. */
export async function walPosition(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ n: string }>(
    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::text AS n",
  );
  return Number(rows[0]?.n);
}

/**
 * WAL the server wrote, in bytes: pg_stat_wal's `wal_bytes` counts the records only, not the
 * rest of a segment that a switch skips (the insert position jumps over it). The writers'
 * sessions flush their statistics first; other sessions' lag by at most a second.
 */
export async function walWritten(client: pg.Client, writers: PanelWriter[] = []): Promise<number> {
  await Promise.all(writers.map((writer) => writer.flushStats()));
  const { rows } = await client.query<{ n: string }>(
    'SELECT wal_bytes::text AS n FROM pg_stat_wal',
  );
  return Number(rows[0]?.n);
}

/**
 * The writers back to back until the server wrote `targetBytes` of WAL, asking for a segment
 * switch each `bytesPerSwitch` of it: the archive gets the segments a slower load of the same
 * WAL would have given it with a switch every so many seconds.
 */
export async function writeWalVolume(
  control: pg.Client,
  writers: PanelWriter[],
  options: {
    targetBytes: number;
    bytesPerSwitch: number;
    rows: number;
    updates: number;
    phase: string;
  },
) {
  const { targetBytes, bytesPerSwitch } = options;
  const from = await walWritten(control, writers);
  let lastSwitch = await walPosition(control);
  let switches = 0;
  let reached = false;
  const watch = (async () => {
    while (!reached) {
      if ((await walPosition(control)) - lastSwitch >= bytesPerSwitch) {
        await control.query('SELECT pg_switch_wal()');
        switches += 1;
        lastSwitch = await walPosition(control);
      }
      reached = (await walWritten(control)) - from >= targetBytes;
      if (!reached) await sleep(100);
    }
  })();
  const writes = await unpacedWrites(writers, { ...options, done: () => reached });
  await watch;
  return { ...writes, walBytes: (await walWritten(control, writers)) - from, switches };
}
