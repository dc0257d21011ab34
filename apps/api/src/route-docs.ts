import { type ErrorCode, errorStatus } from '@pgkeep/core';
import type { z } from 'zod';
import { errorEnvelope } from './schemas.js';

/** A status an error code can answer with (core's one table). */
export type ErrorHttpStatus = (typeof errorStatus)[ErrorCode];

/** A header, as a JSON Schema with its description (fastify-swagger makes it a header object). */
export interface HeaderDoc {
  type: 'string' | 'integer';
  description: string;
  example?: string;
}

/**
 * What the OpenAPI document (/docs/json) says of one route beyond its zod schemas: its name,
 * its purpose, and every error code it can answer with. The route's error responses are built
 * from `errors`, so the list is written once, beside the handler whose services throw them.
 */
export interface RouteDoc {
  /** camelCase, unique and stable: generated clients name their methods after it. */
  operationId: string;
  summary: string;
  description: string;
  /** `admin`: behind requireAdmin (adds UNAUTHORIZED, FORBIDDEN, TOO_MANY_AUTH_FAILURES). */
  access: 'admin' | 'public';
  /** The codes the route's own services can throw, beyond those derived below. */
  errors: readonly ErrorCode[];
  /**
   * Body fields the handler refuses to go without, with its own code (CONFIRMATION_REQUIRED,
   * after RESTORE_DISABLED and BACKUP_NOT_FOUND): optional in the zod schema so that the
   * order of those checks stays, required in the document so that clients always send them.
   */
  requiredBody?: readonly string[];
  /** Request headers the route reads (the download's `Range`); documented, not validated. */
  requestHeaders?: Readonly<Record<string, HeaderDoc>>;
  /** Response headers per status (the download's range and checksum headers). */
  responseHeaders?: Readonly<Record<number, Readonly<Record<string, HeaderDoc>>>>;
}

/** What a request body can be refused for before validation: malformed, too large, not JSON. */
export const BODY_PARSING = [
  'VALIDATION_ERROR',
  'PAYLOAD_TOO_LARGE',
  'UNSUPPORTED_MEDIA_TYPE',
] as const satisfies readonly ErrorCode[];

const ADMIN_REFUSALS = [
  'UNAUTHORIZED',
  'FORBIDDEN',
  'TOO_MANY_AUTH_FAILURES',
] as const satisfies readonly ErrorCode[];

/** The key under which a route's schema carries its doc to the swagger transform. */
export const ROUTE_DOC_KEY = 'x-pgkeep-doc';

export interface ResolvedRouteDoc extends RouteDoc {
  /** Every code the route can answer with, derived ones included, in the table's order. */
  allErrors: ErrorCode[];
}

interface RouteSchemaInput {
  params?: z.ZodType;
  querystring?: z.ZodType;
  body?: z.ZodType;
  response?: Record<number, unknown>;
}

/** The code a bad path parameter gets (the error handler's rule: see validationCode). */
function paramsCode(params: z.ZodType): ErrorCode {
  const keys = Object.keys((params as unknown as { shape?: object }).shape ?? {});
  if (keys.includes('jobId')) return 'INVALID_JOB_ID';
  if (keys.includes('id')) return 'INVALID_BACKUP_ID';
  return 'VALIDATION_ERROR';
}

/** The doc's codes plus those its schema and access imply, each once, in the table's order. */
export function routeErrors(doc: RouteDoc, schema: RouteSchemaInput): ErrorCode[] {
  const codes = new Set<ErrorCode>(doc.errors);
  if (doc.access === 'admin') for (const code of ADMIN_REFUSALS) codes.add(code);
  if (schema.params) codes.add(paramsCode(schema.params));
  if (schema.querystring) codes.add('VALIDATION_ERROR');
  if (schema.body) for (const code of BODY_PARSING) codes.add(code);
  codes.add('INTERNAL_ERROR');
  return (Object.keys(errorStatus) as ErrorCode[]).filter((code) => codes.has(code));
}

/**
 * The route's schema with its doc: operationId, summary and description, and one error
 * response (the ErrorEnvelope) per status its codes answer with. The route's own responses
 * win over an error response of the same status (the health check's 503 is not an error).
 */
export function documented<S extends RouteSchemaInput>(doc: RouteDoc, schema: S) {
  const allErrors = routeErrors(doc, schema);
  const errors = Object.fromEntries(
    allErrors.map((code) => [errorStatus[code], errorEnvelope]),
  ) as Record<ErrorHttpStatus, typeof errorEnvelope>;
  const resolved: ResolvedRouteDoc = { ...doc, allErrors };
  return {
    ...schema,
    operationId: doc.operationId,
    summary: doc.summary,
    description: doc.description,
    [ROUTE_DOC_KEY]: resolved,
    response: { ...errors, ...schema.response } as Omit<
      Record<ErrorHttpStatus, typeof errorEnvelope>,
      keyof NonNullable<S['response']>
    > &
      NonNullable<S['response']>,
  };
}
