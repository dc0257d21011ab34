import { describe, expect, it } from 'vitest';
import { sharedResult } from './shared-result.js';

describe('sharedResult', () => {
  function counted<T>(value: () => Promise<T>) {
    let calls = 0;
    return {
      work: () => {
        calls += 1;
        return value();
      },
      calls: () => calls,
    };
  }

  it('runs once for callers who ask while it runs', async () => {
    let release: (value: string) => void = () => {};
    const gate = new Promise<string>((resolve) => {
      release = resolve;
    });
    const work = counted(() => gate);
    const shared = sharedResult(1_000, work.work);
    const pending = [shared(), shared(), shared()];
    release('answer');
    expect(await Promise.all(pending)).toEqual(['answer', 'answer', 'answer']);
    expect(work.calls()).toBe(1);
  });

  it('keeps the result for ttlMs after it settled, then runs again', async () => {
    let clock = 0;
    const work = counted(async () => clock);
    const shared = sharedResult(100, work.work, () => clock);
    expect(await shared()).toBe(0);
    clock = 99;
    expect(await shared()).toBe(0);
    expect(work.calls()).toBe(1);
    clock = 100;
    expect(await shared()).toBe(100);
    expect(work.calls()).toBe(2);
  });

  it('with ttlMs 0, shares only the run in progress', async () => {
    const work = counted(async () => 'x');
    const shared = sharedResult(0, work.work);
    await Promise.all([shared(), shared()]);
    await shared();
    expect(work.calls()).toBe(2);
  });

  it('does not keep a failure', async () => {
    let fail = true;
    const work = counted(async () => {
      if (fail) throw new Error('down');
      return 'up';
    });
    const shared = sharedResult(60_000, work.work);
    await expect(shared()).rejects.toThrow('down');
    fail = false;
    expect(await shared()).toBe('up');
    expect(work.calls()).toBe(2);
  });
});
