import { AppError } from '@pgkeep/core';
import { describe, expect, it } from 'vitest';
import { assertRestoreStillWanted } from './restore-window.js';

const window = 5 * 60_000;
const requestedAt = Date.parse('2026-11-26T12:00:00.000Z');
const request = {
  backupId: '2026-11-26T11-00-00-000Z-0123456789ab',
  target: 'panel',
  requestedAt: new Date(requestedAt).toISOString(),
};
const minutes = (n: number) => requestedAt + n * 60_000;

function verdict(
  run: { startedAt?: number; rerun?: boolean },
  stage: 'start' | 'swap',
  now: number,
): string {
  try {
    assertRestoreStillWanted(request, run, window, stage, now);
    return 'goes on';
  } catch (error) {
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).retryable).toBe(false);
    return (error as AppError).code;
  }
}

describe('assertRestoreStillWanted', () => {
  it('lets any run begin and swap within the window of its request', () => {
    expect(verdict({ startedAt: minutes(0), rerun: false }, 'start', minutes(1))).toBe('goes on');
    expect(verdict({ startedAt: minutes(1), rerun: true }, 'start', minutes(2))).toBe('goes on');
    expect(verdict({ startedAt: minutes(1), rerun: true }, 'swap', minutes(5))).toBe('goes on');
  });

  it('lets the first run that started promptly go on and swap late (a long restore)', () => {
    const first = { startedAt: minutes(0.1), rerun: false };
    expect(verdict(first, 'start', minutes(20))).toBe('goes on'); // waited for the lock
    expect(verdict(first, 'swap', minutes(90))).toBe('goes on');
  });

  it('stops a re-run that begins, or reaches its swap, after the window', () => {
    expect(verdict({ startedAt: minutes(180), rerun: true }, 'start', minutes(180))).toBe(
      'RESTORE_INTERRUPTED',
    );
    expect(verdict({ startedAt: minutes(2), rerun: true }, 'swap', minutes(6))).toBe(
      'RESTORE_INTERRUPTED',
    );
  });

  it('stops a first run that only started after the window (no worker took it in time)', () => {
    expect(verdict({ startedAt: minutes(60), rerun: false }, 'start', minutes(60))).toBe(
      'RESTORE_INTERRUPTED',
    );
  });

  it('says when it was asked for, what is untouched, and that it must be asked for again', () => {
    try {
      assertRestoreStillWanted(
        request,
        { startedAt: minutes(180), rerun: true },
        window,
        'start',
        minutes(180),
      );
      expect.unreachable();
    } catch (error) {
      const { message } = error as AppError;
      expect(message).toContain(request.requestedAt);
      expect(message).toContain('3.0 h ago');
      expect(message).toContain('RESTORE_RETRY_WINDOW_MS (5 min)');
      expect(message).toContain('panel is untouched');
      expect(message).toContain('Ask for the restore again');
    }
  });
});
