import type { OpenAPIV3_1 } from 'openapi-types';
import type { ApiExample, ApiExamples } from '../apps/api/src/api-examples.js';

/**
 * docs/api.md, made from the OpenAPI document (/docs/json) and the examples recorded from the
 * real API (docs/api-examples.json). Pure: `npm run docs:gen-api` writes what this returns, and
 * test/openapi.int.test.ts fails when the file differs from it.
 */

type Operation = OpenAPIV3_1.OperationObject;
type Schema = OpenAPIV3_1.SchemaObject;

const METHODS = ['get', 'post', 'put', 'delete', 'patch'] as const;

interface Listed {
  method: string;
  path: string;
  operation: Operation;
}

const TAG_TITLES: Record<string, string> = {
  backups: 'Backups',
  jobs: 'Jobs',
  pitr: 'Point-in-time recovery',
  schedules: 'Schedules',
  targets: 'Targets',
  operators: 'Operators’ board',
  other: 'Metrics',
};

function operationsOf(document: OpenAPIV3_1.Document): Listed[] {
  return Object.entries(document.paths ?? {}).flatMap(([path, item]) =>
    METHODS.flatMap((method) => {
      const operation = item?.[method] as Operation | undefined;
      return operation ? [{ method: method.toUpperCase(), path, operation }] : [];
    }),
  );
}

const fence = (language: string, text: string) => `\`\`\`${language}\n${text.trimEnd()}\n\`\`\``;
const json = (value: unknown) => JSON.stringify(value, null, 2);

function typeOf(schema: Schema | undefined): string {
  if (!schema) return 'any';
  if (schema.enum) return schema.enum.map((value) => JSON.stringify(value)).join(' | ');
  if (schema.anyOf) return (schema.anyOf as Schema[]).map(typeOf).join(' | ');
  if (schema.type === 'array') return `${typeOf(schema.items as Schema)}[]`;
  if (Array.isArray(schema.type)) return schema.type.join(' | ');
  return schema.type ?? 'any';
}

function authOf(operation: Operation): string {
  if (operation.security === undefined) return 'none';
  if (operation.security.length === 0) return 'none (the token, if any, is in the body)';
  return 'admin token (`Authorization: Bearer …`)';
}

function parameters(operation: Operation): string[] {
  const list = (operation.parameters ?? []) as OpenAPIV3_1.ParameterObject[];
  if (list.length === 0) return [];
  return [
    '**Parameters**',
    '',
    ...list.map((parameter) => {
      const required = parameter.required ? ', required' : '';
      const about = parameter.description ? `: ${parameter.description}` : '';
      return `- \`${parameter.name}\` (${parameter.in}, ${typeOf(parameter.schema as Schema)}${required})${about}`;
    }),
    '',
  ];
}

function requestBody(operation: Operation): string[] {
  const body = operation.requestBody as OpenAPIV3_1.RequestBodyObject | undefined;
  const schema = body?.content?.['application/json']?.schema as Schema | undefined;
  const properties = Object.entries(schema?.properties ?? {});
  if (!schema || properties.length === 0) return [];
  const required = new Set(schema.required ?? []);
  return [
    '**Body** (JSON)',
    '',
    ...properties.map(
      ([name, property]) =>
        `- \`${name}\` (${typeOf(property as Schema)}${required.has(name) ? ', required' : ''})`,
    ),
    '',
  ];
}

function responses(operation: Operation): string[] {
  return [
    '**Responses**',
    '',
    ...Object.entries(operation.responses ?? {}).map(([status, response]) => {
      const { description = '', headers } = response as OpenAPIV3_1.ResponseObject;
      const about = description.replace(/^Error envelope; error.code: /, 'error.code ');
      const named = Object.keys(headers ?? {});
      const withHeaders =
        named.length > 0 ? `; headers ${named.map((h) => `\`${h}\``).join(', ')}` : '';
      return `- \`${status}\`: ${about}${withHeaders}`;
    }),
    '',
  ];
}

function example({ title, request, response }: ApiExample): string[] {
  const requestLines = [
    `${request.method} ${request.url}`,
    ...Object.entries(request.headers ?? {}).map(([name, value]) => `${name}: ${value}`),
  ];
  const requestText =
    request.body === undefined
      ? requestLines.join('\n')
      : `${requestLines.join('\n')}\ncontent-type: application/json\n\n${json(request.body)}`;
  const headerLines = Object.entries(response.headers ?? {}).map(
    ([name, value]) => `${name}: ${value}`,
  );
  const body =
    response.body === null
      ? '(the bytes)'
      : typeof response.body === 'string'
        ? response.body
        : json(response.body);
  return [
    `_${title}_`,
    '',
    fence('http', requestText),
    '',
    fence('http', [`HTTP/1.1 ${response.status}`, ...headerLines, '', body].join('\n')),
    '',
  ];
}

export function renderApiReference(document: OpenAPIV3_1.Document, examples: ApiExamples): string {
  const listed = operationsOf(document);
  const tags = [...new Set(listed.map(({ operation }) => operation.tags?.[0] ?? 'other'))];
  const lines: string[] = [
    '# pgkeep API reference',
    '',
    '<!-- Made by `npm run docs:gen-api` from the OpenAPI document and docs/api-examples.json (recorded from the real API by `npm run docs:examples`). Do not edit: change the routes, or record the examples again. -->',
    '',
    document.info.description ?? '',
    '',
    'The same document, as OpenAPI 3.1, is served at `/docs/json` (Swagger UI at `/docs`); a client can be generated from it. Each operation below has its `operationId`.',
    '',
    '## Authentication',
    '',
    'Admin routes take a JWT in the `Authorization: Bearer …` header (never a cookie): HS256 with `JWT_SECRET`, or RS256/ES256 against `JWT_PUBLIC_KEY`. The token must name its user (`sub`, `userId` or `id`) and carry role `SUPER_ADMIN` or permission `backup:manage`. `npm run token` makes one. Without a valid token the answer is 401 `UNAUTHORIZED`; with a valid token that is not an admin’s, 403 `FORBIDDEN`; after too many failures from one address, 429 `TOO_MANY_AUTH_FAILURES` with `Retry-After`.',
    '',
    '## Errors',
    '',
    'Every error is `{ "success": false, "error": { "code", "message", "details"? } }`. The `code` is stable and decides the status. Each route below lists the codes it can answer with, by status. A 5xx message is generic, never a host or a path.',
    '',
    '## Routes',
    '',
  ];
  for (const tag of tags) {
    lines.push(`- ${TAG_TITLES[tag] ?? tag}`);
    for (const { method, path, operation } of listed.filter(
      (entry) => (entry.operation.tags?.[0] ?? 'other') === tag,
    )) {
      lines.push(`  - \`${method} ${path}\`: ${operation.summary}`);
    }
  }
  lines.push('');
  for (const tag of tags) {
    lines.push(`## ${TAG_TITLES[tag] ?? tag}`, '');
    for (const { method, path, operation } of listed.filter(
      (entry) => (entry.operation.tags?.[0] ?? 'other') === tag,
    )) {
      lines.push(
        `### ${operation.summary}: \`${method} ${path}\``,
        '',
        `operationId \`${operation.operationId}\` · auth: ${authOf(operation)}`,
        '',
        operation.description ?? '',
        '',
        ...parameters(operation),
        ...requestBody(operation),
        ...responses(operation),
      );
      const recorded = examples.operations[operation.operationId ?? ''] ?? [];
      if (recorded.length > 0) lines.push('**Examples**', '');
      for (const entry of recorded) lines.push(...example(entry));
    }
  }
  return `${lines
    .join('\n')
    .replace(/\n{3,}/g, '\n\n')
    .trimEnd()}\n`;
}
