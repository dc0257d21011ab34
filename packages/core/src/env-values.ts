import { z } from 'zod';

/* Value rules that more than one part of the configuration reads from the environment. */

export const booleanFromEnv = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'], { message: 'must be true or false' })
  .transform((value) => value === 'true' || value === '1' || value === 'yes')
  .meta({ valueType: 'boolean' });

export const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

/** An http(s) URL without credentials in it (fetch refuses those; a secret goes in a header). */
export const webhookUrl = z
  .string()
  .min(1)
  .refine((value) => {
    try {
      const url = new URL(value);
      return (url.protocol === 'http:' || url.protocol === 'https:') && !url.username;
    } catch {
      return false;
    }
  }, 'must be an http:// or https:// URL without user:password')
  .meta({ valueType: 'http(s) URL without credentials' });
