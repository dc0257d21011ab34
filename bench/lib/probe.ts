import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { serverUrl } from './db.js';
import { sleep } from './util.js';

/**
 * An application's view of the database during a restore: every `intervalMs` it runs a query
 * that needs the data (the newest user and the newest message exist), connecting again after
 * any error. A tick that is still running when the next is due is skipped, like a client that
 * waits for its answer. What counts is the time between successful answers.
 */
export class AvailabilityProbe {
  private client: pg.Client | undefined;
  private stopped = false;
  private loop: Promise<void> | undefined;
  readonly successes: number[] = [];
  failures = 0;
  private lastError = '';

  constructor(
    private readonly database: string,
    private readonly ids: { userId: number; messageId: number },
    private readonly intervalMs = 50,
  ) {}

  private async tick(): Promise<void> {
    try {
      if (!this.client) {
        const client = new pg.Client({
          connectionString: serverUrl(this.database),
          connectionTimeoutMillis: 10_000,
        });
        client.on('error', () => {});
        this.client = client;
        await client.connect();
      }
      const { rows } = await this.client.query<{ ok: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM "User" WHERE id = $1)
            AND EXISTS (SELECT 1 FROM "WhatsappMessage" WHERE id = $2) AS ok`,
        [this.ids.userId, this.ids.messageId],
      );
      if (rows[0]?.ok) this.successes.push(performance.now());
      else this.failures += 1;
    } catch (error) {
      this.failures += 1;
      this.lastError = (error as Error).message;
      const client = this.client;
      this.client = undefined;
      await client?.end().catch(() => {});
    }
  }

  start(): this {
    const started = performance.now();
    this.loop = (async () => {
      let tick = 0;
      while (!this.stopped) {
        await this.tick();
        // The next due tick after now (ticks that passed while a query ran are skipped).
        tick = Math.max(tick + 1, Math.ceil((performance.now() - started) / this.intervalMs));
        await sleep(Math.max(0, started + tick * this.intervalMs - performance.now()));
      }
    })();
    return this;
  }

  /** Waits until the probe has succeeded after `since` (the database is back), then stops. */
  async waitForSuccessAfter(since: number, timeoutMs = 600_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while ((this.successes.at(-1) ?? 0) <= since) {
      if (performance.now() > deadline) {
        throw new Error(`the probe did not succeed again (last error: ${this.lastError})`);
      }
      await sleep(this.intervalMs);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    await this.client?.end().catch(() => {});
  }

  /** The longest time without a successful answer that overlaps [from, to] (ms). */
  longestGap(from: number, to: number): number {
    const before = this.successes.filter((t) => t <= from).at(-1) ?? from;
    const after = this.successes.find((t) => t >= to);
    const points = [before, ...this.successes.filter((t) => t > from && t < to)];
    points.push(after ?? performance.now());
    let longest = 0;
    for (let i = 1; i < points.length; i += 1) {
      longest = Math.max(longest, (points[i] as number) - (points[i - 1] as number));
    }
    return longest;
  }
}
