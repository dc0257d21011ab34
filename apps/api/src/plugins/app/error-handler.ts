import { AppError, type ErrorCode, errorStatus } from '@pgkeep/core';
import type { FastifyError } from 'fastify';
import fp from 'fastify-plugin';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';

/** Fastify's own 4xx errors, each given one of our stable codes. */
const fastifyCodes: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'VALIDATION_ERROR',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'VALIDATION_ERROR',
  FST_ERR_CTP_INVALID_JSON_BODY: 'VALIDATION_ERROR',
};

function validationCode(
  error: FastifyError & { validationContext?: string },
  url: string,
): ErrorCode {
  const firstPath =
    (error.validation?.[0] as { instancePath?: string } | undefined)?.instancePath ?? '';
  if (error.validationContext === 'params') {
    if (url.includes(':jobId')) return 'INVALID_JOB_ID';
    if (url.includes(':id')) return 'INVALID_BACKUP_ID';
    return 'VALIDATION_ERROR';
  }
  if (error.validationContext === 'body' && firstPath.startsWith('/tables'))
    return 'INVALID_TABLE_NAME';
  return 'VALIDATION_ERROR';
}

/**
 * The one error handler: stable codes, the panel's envelope, the status from the code table.
 * 5xx messages are logged, never sent: they may name hosts or files.
 */
export default fp(
  async (app) => {
    app.setNotFoundHandler((request, reply) => {
      void reply.code(404).send({
        success: false,
        error: {
          code: 'ROUTE_NOT_FOUND',
          message: `no route ${request.method} ${request.url.split('?')[0]}`,
        },
      });
    });

    app.setErrorHandler((error: FastifyError, request, reply) => {
      let code: ErrorCode;
      let message: string;
      let details: unknown;
      if (error instanceof AppError) {
        code = error.code;
        message = error.message;
        details = error.details;
      } else if (hasZodFastifySchemaValidationErrors(error)) {
        code = validationCode(error, request.routeOptions.url ?? '');
        details = error.validation.map((issue) => ({
          path: `${error.validationContext ?? ''}${issue.instancePath}`,
          message: issue.message,
        }));
        message = `invalid request: ${(details as { path: string; message: string }[])
          .slice(0, 3)
          .map((issue) => `${issue.path} ${issue.message}`)
          .join('; ')}`;
      } else if (error.code && fastifyCodes[error.code]) {
        code = fastifyCodes[error.code] as ErrorCode;
        message = error.message;
      } else if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
        code = error.statusCode === 404 ? 'ROUTE_NOT_FOUND' : 'VALIDATION_ERROR';
        message = error.message;
      } else {
        code = 'INTERNAL_ERROR';
        message = 'internal error';
      }
      const status = errorStatus[code];
      if (status >= 500) {
        request.log.error({ err: error, code }, 'request failed');
        if (error instanceof AppError && status === 503) message = error.message;
        else message = 'internal error';
      }
      void reply.code(status).send({
        success: false,
        error: { code, message, ...(details === undefined ? {} : { details }) },
      });
    });
  },
  { name: 'error-handler' },
);
