import { createHash } from 'node:crypto';
import { AppError, databaseNameSchema } from '@pgkeep/core';
import { escapeIdentifier } from 'pg';

/*
 * CREATE, DROP, ALTER and COMMENT ON DATABASE, GRANT and ALTER ROLE … SET are utility
 * statements: PostgreSQL takes no parameters in them, and CREATE/DROP DATABASE cannot even
 * run inside a function, where format('%I') could build them. Their text is built here, with
 * node-postgres's escapeIdentifier / escapeLiteral (the quoting libpq does), from names that
 * are either checked against the plain-name rule below (the databases pgkeep creates or
 * renames to) or read from the server's own catalog.
 */

/** A database pgkeep creates or renames one to: a plain name (letters, digits, `_ $ -`). */
export function plainDatabaseName(name: string): string {
  if (!databaseNameSchema.safeParse(name).success) {
    throw new AppError(
      'INVALID_DATABASE_NAME',
      `not a plain database name: ${JSON.stringify(name)}`,
    );
  }
  return escapeIdentifier(name);
}

/** Tells one deployment's databases from another's on a shared server (scratch names, markers). */
export function namespaceTag(namespace: string): string {
  return createHash('sha256').update(namespace).digest('hex').slice(0, 8);
}

/**
 * A replaced database is marked with a comment naming the deployment (by its namespace tag)
 * and the time: a clean-up drops only databases its own deployment replaced, never another's
 * nor one that merely has a similar name.
 */
export function replacedMarker(namespace: string, at: Date): string {
  return `pgkeep:replaced:${namespaceTag(namespace)}:${at.toISOString()}`;
}

export const replacedMarkerPattern = /^pgkeep:replaced:([0-9a-f]{8}):(\S+)$/;
