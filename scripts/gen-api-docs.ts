// Writes docs/api.md from the API's OpenAPI document and docs/api-examples.json:
//
//   npm run docs:gen-api
//
// The app is built as the API builds it, but never listens and never connects: the document is
// made from the routes alone. test/openapi.int.test.ts fails when docs/api.md differs from this.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger, loadConfig } from '@pgkeep/core';
import Fastify from 'fastify';
import type { OpenAPIV3_1 } from 'openapi-types';
import { apiExamples } from '../apps/api/src/api-examples.js';
import { app } from '../apps/api/src/app.js';
import { closeServices, createServices } from '../apps/api/src/server.js';
import { renderApiReference } from './api-reference.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const backupDir = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-api-docs-'));
// Placeholders: nothing is connected to (Redis and PostgreSQL clients connect lazily).
const env = {
  DATABASE_URL: 'postgres://pgkeep@127.0.0.1:1/pgkeep',
  REDIS_URL: 'redis://127.0.0.1:1',
  JWT_SECRET: 'x'.repeat(48),
  BACKUP_DIR: backupDir,
  LOG_LEVEL: 'silent',
};
const services = await createServices(loadConfig(env), createLogger('silent', 'pgkeep-docs'), env);
const fastify = Fastify();
try {
  await fastify.register(app, { services });
  await fastify.ready();
  const response = await fastify.inject({ url: '/docs/json' });
  if (response.statusCode !== 200) throw new Error(`GET /docs/json: ${response.statusCode}`);
  const document = response.json() as OpenAPIV3_1.Document;
  await writeFile(path.join(root, 'docs', 'api.md'), renderApiReference(document, apiExamples));
  console.log('wrote docs/api.md');
} finally {
  await fastify.close();
  await closeServices(services).catch(() => {});
  await rm(backupDir, { recursive: true, force: true });
}
