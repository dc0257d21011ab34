import { z } from 'zod';

/*
 * Rules for the names and texts that jobs and manifests carry. One place, because a manifest
 * read back from a disk or a bucket must pass exactly what the API accepted when it was asked.
 */

export const labelSchema = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[^\p{Cc}]*$/u, 'must not contain control characters');

/** A database pgkeep may create, restore into or rename: a plain identifier. */
export const databaseNameSchema = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_$-]{0,62}$/, 'must be a database name (letters, digits, _ $ -)');

/** Who asked for a job: the JWT `sub`, or a schedule's name. */
export const requesterSchema = z.string().min(1).max(200);
