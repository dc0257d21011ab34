/**
 * Tokens that passed every check (signature, algorithm, expiry, not-before, admin role, named
 * user), so that a panel polling a job several times a second does not pay for a full
 * verification each time: @fastify/jwt decodes and re-checks the token on every call even when
 * fast-jwt's own cache answers.
 *
 * Keyed by the whole Authorization header, so a hit needs the very same token, byte for byte.
 * An entry is reused only before the token's own `exp` (checked on every use; once it has
 * passed, the request takes the full path and gets the usual "expired" answer) and for at most
 * `maxAgeMs` (tokens without `exp`). Refused tokens are never stored, so a stranger cannot fill
 * the cache; it holds at most `maxEntries` tokens, the oldest going first.
 */
export class VerifiedTokenCache<T> {
  readonly #entries = new Map<string, { value: T; reuseUntil: number }>();
  readonly #maxEntries: number;
  readonly #maxAgeMs: number;
  readonly #now: () => number;

  constructor(options: { maxEntries: number; maxAgeMs: number; now?: () => number }) {
    this.#maxEntries = options.maxEntries;
    this.#maxAgeMs = options.maxAgeMs;
    this.#now = options.now ?? Date.now;
  }

  get(authorization: string): T | undefined {
    const entry = this.#entries.get(authorization);
    if (entry === undefined) return undefined;
    if (this.#now() < entry.reuseUntil) return entry.value;
    this.#entries.delete(authorization);
    return undefined;
  }

  /** `expiresAt`: the token's `exp`, null when it has none. */
  set(authorization: string, value: T, expiresAt: Date | null): void {
    const now = this.#now();
    const reuseUntil = Math.min(
      expiresAt?.getTime() ?? Number.POSITIVE_INFINITY,
      now + this.#maxAgeMs,
    );
    if (!(reuseUntil > now)) return;
    this.#entries.delete(authorization);
    if (this.#entries.size >= this.#maxEntries) {
      const oldest = this.#entries.keys().next();
      if (!oldest.done) this.#entries.delete(oldest.value);
    }
    this.#entries.set(authorization, { value, reuseUntil });
  }

  get size(): number {
    return this.#entries.size;
  }
}
