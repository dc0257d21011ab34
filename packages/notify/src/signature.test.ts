import { createHmac, timingSafeEqual } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { signWebhook, verifyWebhookSignature } from './signature.js';

const secret = 'whsec-0123456789abcdef';
const body = JSON.stringify({ text: 'pgkeep backup failed', event: 'backup.failed' });

describe('webhook signature', () => {
  it('is sha256=<hex> of HMAC-SHA256 over "<timestamp>.<raw body>", as a receiver recomputes it', () => {
    const timestamp = '1795696235';
    const signature = signWebhook(secret, timestamp, body);
    expect(signature).toMatch(/^sha256=[0-9a-f]{64}$/);
    const expected = `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
    expect(timingSafeEqual(Buffer.from(signature), Buffer.from(expected))).toBe(true);
  });

  it('changes with the body, the timestamp and the secret', () => {
    const signature = signWebhook(secret, '1795696235', body);
    expect(signWebhook(secret, '1795696235', `${body} `)).not.toBe(signature);
    expect(signWebhook(secret, '1795696236', body)).not.toBe(signature);
    expect(signWebhook(`${secret}x`, '1795696235', body)).not.toBe(signature);
  });

  it('verifies a fresh delivery and refuses a tampered, unsigned or replayed one', () => {
    const now = 1_795_696_235_000;
    const timestamp = String(now / 1000);
    const signature = signWebhook(secret, timestamp, body);
    const check = (overrides: Partial<Parameters<typeof verifyWebhookSignature>[0]>) =>
      verifyWebhookSignature({ secret, body, signature, timestamp, now, ...overrides });
    expect(check({})).toBe(true);
    expect(check({ body: body.replace('failed', 'done') })).toBe(false);
    expect(check({ secret: 'another-secret-0123456789' })).toBe(false);
    expect(check({ signature: undefined })).toBe(false);
    expect(check({ signature: 'sha256=00' })).toBe(false);
    expect(check({ now: now + 301_000 })).toBe(false);
    expect(check({ now: now + 299_000 })).toBe(true);
  });
});
