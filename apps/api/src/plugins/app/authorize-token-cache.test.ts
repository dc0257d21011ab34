import { describe, expect, it } from 'vitest';
import { VerifiedTokenCache } from './authorize-token-cache.js';

const header = (token: string) => `Bearer ${token}`;

function cacheAt(start: number, options: { maxEntries?: number; maxAgeMs?: number } = {}) {
  const clock = { now: start };
  const cache = new VerifiedTokenCache<string>({
    maxEntries: options.maxEntries ?? 10,
    maxAgeMs: options.maxAgeMs ?? 600_000,
    now: () => clock.now,
  });
  return { cache, clock };
}

describe('VerifiedTokenCache', () => {
  it('reuses a verification only before the token expires', () => {
    const { cache, clock } = cacheAt(1_000_000);
    cache.set(header('a.b.c'), 'admin', new Date(1_060_000));
    expect(cache.get(header('a.b.c'))).toBe('admin');
    clock.now = 1_059_999;
    expect(cache.get(header('a.b.c'))).toBe('admin');
    clock.now = 1_060_000;
    expect(cache.get(header('a.b.c'))).toBeUndefined();
    // Gone for good: an expired token is verified (and refused) in full from now on.
    clock.now = 1_000_000;
    expect(cache.get(header('a.b.c'))).toBeUndefined();
  });

  it('matches the whole header only: another token, or the same one altered, is not known', () => {
    const { cache } = cacheAt(0);
    cache.set(header('aaa.bbb.ccc'), 'admin', null);
    expect(cache.get(header('aaa.bbb.cc'))).toBeUndefined();
    expect(cache.get(header('aaa.bbb.ccd'))).toBeUndefined();
    expect(cache.get(`bearer aaa.bbb.ccc`)).toBeUndefined();
    expect(cache.get(`${header('aaa.bbb.ccc')} `)).toBeUndefined();
    expect(cache.get(header('aaa.bbb.ccc'))).toBe('admin');
  });

  it('keeps a token without exp for maxAgeMs at most', () => {
    const { cache, clock } = cacheAt(0, { maxAgeMs: 1_000 });
    cache.set(header('t'), 'admin', null);
    clock.now = 999;
    expect(cache.get(header('t'))).toBe('admin');
    clock.now = 1_000;
    expect(cache.get(header('t'))).toBeUndefined();
  });

  it('does not store a token that has already expired', () => {
    const { cache } = cacheAt(5_000);
    cache.set(header('t'), 'admin', new Date(5_000));
    expect(cache.size).toBe(0);
  });

  it('holds at most maxEntries tokens, the oldest going first', () => {
    const { cache } = cacheAt(0, { maxEntries: 2 });
    cache.set(header('1'), 'one', null);
    cache.set(header('2'), 'two', null);
    cache.set(header('3'), 'three', null);
    expect(cache.size).toBe(2);
    expect(cache.get(header('1'))).toBeUndefined();
    expect(cache.get(header('3'))).toBe('three');
  });
});
