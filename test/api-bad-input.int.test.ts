import { randomUUID } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminHeaders, json, postJob, startApi, type TestApi, waitForJob } from './support/api.js';
import { seedPanelSchema } from './support/panel-schema.js';
import { createTestEnv, type TestEnv } from './support/test-env.js';
import { startWorker, type WorkerProcess } from './support/worker-process.js';

/**
 * Bad input gets a clear 4xx with a stable code and changes nothing: no job is queued, no file
 * appears or disappears in the backup directory, and the backups that were there stay listed.
 */

let env: TestEnv;
let api: TestApi;
let worker: WorkerProcess;
let existing: { id: string; filename: string }[] = [];

beforeAll(async () => {
  env = await createTestEnv('badinput');
  await seedPanelSchema(env.databaseUrl, 200);
  [api, worker] = await Promise.all([startApi(env.env), startWorker(env.env)]);
  for (const body of [{}, { tables: ['User', 'WhatsappMessage'], format: 'plain' }]) {
    const job = await waitForJob(api, await postJob(api, '/api/backup', body));
    expect(job.state, JSON.stringify(job.error)).toBe('completed');
  }
  existing = await listedBackups();
  expect(existing).toHaveLength(2);
});

afterAll(async () => {
  await worker?.stop();
  for (const queue of Object.values(api?.services.queues ?? {})) {
    await queue.obliterate({ force: true });
  }
  await api?.close();
  await env?.cleanup();
});

async function listedBackups() {
  const response = await api.app.inject({
    method: 'GET',
    url: '/api/backup',
    headers: adminHeaders(),
  });
  expect(response.statusCode, response.body).toBe(200);
  return (response.json() as { data: { id: string; filename: string }[] }).data.map(
    ({ id, filename }) => ({ id, filename }),
  );
}

/** What a request could change: the jobs in both queues and the files in the backup dir. */
async function snapshot() {
  return {
    backups: await api.services.queues.backups.getJobCounts(),
    maintenance: await api.services.queues.maintenance.getJobCounts(),
    files: (await readdir(env.backupDir)).sort(),
  };
}

/** `code` may be 'A|B': the codes that are all fair answers, where the choice is debatable. */
function expectError(response: LightMyRequestResponse, status: number, code: string) {
  expect(response.statusCode, response.body).toBe(status);
  expect(response.headers['content-type']).toMatch(/^application\/json/);
  const body = json(response);
  expect(body.success, response.body).toBe(false);
  expect(code.split('|')).toContain(body.error?.code);
  expect(body.error).toEqual({
    code: body.error.code,
    message: expect.any(String),
    ...('details' in body.error ? { details: expect.any(Array) } : {}),
  });
  expect(body.error.message.length).toBeGreaterThan(0);
  expect(Object.keys(body).sort()).toEqual(['error', 'success']);
}

/** Sends one bad request as an admin and checks the answer and that nothing changed. */
async function expectRefused(request: InjectOptions, status: number, code: string) {
  const before = await snapshot();
  const response = await api.app.inject({
    ...request,
    headers: { ...adminHeaders(), ...request.headers },
  });
  expectError(response, status, code);
  expect(await snapshot()).toEqual(before);
  return response;
}

const wellFormedMissingId = '2020-01-01T00-00-00-000Z-abcdefabcdef';
const tenKb = 'a'.repeat(10 * 1024);
const MALFORMED_ID_CODES = 'INVALID_BACKUP_ID|VALIDATION_ERROR';
const MALFORMED_JOB_ID_CODES = 'INVALID_JOB_ID|VALIDATION_ERROR';

describe.each(['GET', 'DELETE'] as const)('%s /api/backup/:id', (method) => {
  it.each([
    {
      name: 'a raw ../../etc/passwd (no route: the slashes split the path)',
      path: '../../etc/passwd',
      status: 404,
      code: 'ROUTE_NOT_FOUND',
    },
    {
      name: 'a fully encoded traversal',
      path: '%2e%2e%2f%2e%2e%2fetc%2fpasswd',
      status: 400,
      code: 'INVALID_BACKUP_ID',
    },
    {
      name: 'a traversal with encoded slashes',
      path: '..%2F..%2Fetc%2Fpasswd',
      status: 400,
      code: 'INVALID_BACKUP_ID',
    },
    {
      name: 'a traversal to a real manifest name',
      path: '..%2Fbackup-2020-01-01T00-00-00-000Z.manifest.json',
      status: 400,
      code: 'INVALID_BACKUP_ID',
    },
    { name: 'an empty id (trailing slash)', path: '', status: 400, code: 'INVALID_BACKUP_ID' },
    { name: 'a 10 KB id', path: tenKb, status: 400, code: 'INVALID_BACKUP_ID' },
    {
      name: 'a well-formed id followed by a NUL',
      path: `${wellFormedMissingId}%00`,
      status: 400,
      code: 'INVALID_BACKUP_ID',
    },
    {
      name: 'a NUL followed by a traversal',
      path: '%00..%2F..%2Fetc%2Fpasswd',
      status: 400,
      code: 'INVALID_BACKUP_ID',
    },
    // A malformed escape is refused by the router before any route runs; the answer must
    // still be the API's envelope with a stable code, not Fastify's own error body.
    { name: 'a malformed escape (%ZZ)', path: '%ZZ', status: 400, code: MALFORMED_ID_CODES },
    { name: 'a lone %', path: '%', status: 400, code: MALFORMED_ID_CODES },
    {
      name: 'a truncated UTF-8 escape',
      path: `${wellFormedMissingId}%E0%A4%A`,
      status: 400,
      code: MALFORMED_ID_CODES,
    },
    {
      name: 'a filename instead of an id',
      path: 'backup-2020-01-01T00-00-00-000Z.dump.zst',
      status: 400,
      code: 'INVALID_BACKUP_ID',
    },
    {
      name: 'a well-formed id that does not exist',
      path: wellFormedMissingId,
      status: 404,
      code: 'BACKUP_NOT_FOUND',
    },
  ])('$name → $status $code', async ({ path, status, code }) => {
    await expectRefused({ method, url: `/api/backup/${path}` }, status, code);
  });
});

describe('GET /api/jobs/:jobId', () => {
  it.each([
    { name: 'garbage', jobId: 'not-a-job', status: 400, code: 'INVALID_JOB_ID' },
    { name: 'a 10 KB id', jobId: tenKb, status: 400, code: 'INVALID_JOB_ID' },
    { name: 'an empty id (trailing slash)', jobId: '', status: 400, code: 'INVALID_JOB_ID' },
    { name: 'a malformed escape (%ZZ)', jobId: '%ZZ', status: 400, code: MALFORMED_JOB_ID_CODES },
    {
      name: 'an encoded traversal',
      jobId: '..%2F..%2Fetc%2Fpasswd',
      status: 400,
      code: 'INVALID_JOB_ID',
    },
    {
      name: 'a well-formed-looking id of an unknown job name',
      jobId: `rewind-${randomUUID()}`,
      status: 400,
      code: 'INVALID_JOB_ID',
    },
    {
      name: 'a well-formed job id followed by a NUL',
      jobId: `backup-${randomUUID()}%00`,
      status: 400,
      code: 'INVALID_JOB_ID',
    },
    {
      name: 'a well-formed id of a job that does not exist',
      jobId: `backup-${randomUUID()}`,
      status: 404,
      code: 'JOB_NOT_FOUND',
    },
    {
      name: 'a well-formed cleanup id that does not exist',
      jobId: `cleanup-${randomUUID()}`,
      status: 404,
      code: 'JOB_NOT_FOUND',
    },
  ])('$name → $status $code', async ({ jobId, status, code }) => {
    await expectRefused({ method: 'GET', url: `/api/jobs/${jobId}` }, status, code);
  });
});

describe('POST /api/backup', () => {
  it.each([
    { name: 'quotes and SQL', tables: ['User"; DROP TABLE x; --'] },
    { name: 'a semicolon', tables: ['User;'] },
    { name: 'a comment', tables: ['User--'] },
    { name: 'a newline', tables: ['User\nWhatsappMessage'] },
    { name: 'a space', tables: ['User Payment'] },
    { name: 'a shell substitution', tables: ['$(touch /tmp/pwned)'] },
    { name: 'a pg_dump pattern wildcard', tables: ['*'] },
    { name: 'a leading dash (an option to pg_dump)', tables: ['--file=/tmp/x'] },
    { name: 'two dots', tables: ['public.User.id'] },
    { name: 'a 200-character name', tables: ['U'.repeat(200)] },
    { name: 'an empty string', tables: [''] },
    { name: 'an empty array', tables: [] },
    { name: 'a repeated table', tables: ['User', 'User'] },
    { name: '10,000 entries', tables: Array.from({ length: 10_000 }, (_, i) => `t${i}`) },
    { name: 'a number', tables: [42] },
    { name: 'a string instead of a list', tables: 'User' },
  ])('tables with $name → 400 INVALID_TABLE_NAME', async ({ tables }) => {
    await expectRefused(
      { method: 'POST', url: '/api/backup', payload: { tables } },
      400,
      'INVALID_TABLE_NAME',
    );
  });

  it.each([
    { name: 'an unknown key', payload: { tables: ['User'], dropEverything: true } },
    { name: 'a misspelt key', payload: { table: ['User'] } },
    { name: "format 'tar'", payload: { format: 'tar' } },
    { name: "compression 'lz4'", payload: { compression: 'lz4' } },
    { name: 'a label with a newline', payload: { label: 'before\nrelease' } },
    { name: 'a label with a NUL', payload: { label: 'before\u0000release' } },
    { name: 'a 10 KB label', payload: { label: tenKb } },
    { name: 'an empty label', payload: { label: '' } },
    { name: 'a JSON array body', payload: [] },
    {
      name: 'a __proto__ key',
      payload: '{"__proto__":{"tables":["User"]}}',
      headers: { 'content-type': 'application/json' },
    },
    {
      name: 'invalid JSON text',
      payload: '{"tables": [',
      headers: { 'content-type': 'application/json' },
    },
    { name: 'an empty JSON body', payload: '', headers: { 'content-type': 'application/json' } },
  ])('$name → 400 VALIDATION_ERROR', async ({ payload, headers }) => {
    await expectRefused(
      { method: 'POST', url: '/api/backup', payload, ...(headers ? { headers } : {}) },
      400,
      'VALIDATION_ERROR',
    );
  });

  it('a JSON body over 1 MB → 413 PAYLOAD_TOO_LARGE', async () => {
    const payload = JSON.stringify({ label: 'x'.repeat(1024 * 1024 + 1) });
    await expectRefused(
      {
        method: 'POST',
        url: '/api/backup',
        payload,
        headers: { 'content-type': 'application/json' },
      },
      413,
      'PAYLOAD_TOO_LARGE',
    );
  });

  it.each([
    { contentType: 'text/plain', payload: '{"format":"plain"}' },
    { contentType: 'text/plain; charset=utf-8', payload: '{}' },
    { contentType: 'application/x-www-form-urlencoded', payload: 'format=plain&tables=User' },
    { contentType: 'multipart/form-data; boundary=x', payload: '--x--\r\n' },
    { contentType: 'application/xml', payload: '<backup/>' },
  ])('a $contentType body → 415 UNSUPPORTED_MEDIA_TYPE', async ({ contentType, payload }) => {
    await expectRefused(
      { method: 'POST', url: '/api/backup', payload, headers: { 'content-type': contentType } },
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    );
  });
});

describe('POST /api/backup/clean', () => {
  it.each([
    { name: 'keepLast=-1', query: '?keepLast=-1' },
    { name: 'keepLast=0', query: '?keepLast=0' },
    { name: 'keepLast=abc', query: '?keepLast=abc' },
    { name: 'keepLast=1e9', query: '?keepLast=1e9' },
    { name: 'keepLast=1.5', query: '?keepLast=1.5' },
    { name: 'keepLast=99999 (above 10000)', query: '?keepLast=99999' },
    { name: 'keepLast= (empty)', query: '?keepLast=' },
    { name: 'keepLast given twice', query: '?keepLast=3&keepLast=4' },
    { name: 'no keepLast', query: '' },
    { name: 'an extra parameter', query: '?keepLast=3&extra=1' },
  ])('$name → 400 VALIDATION_ERROR', async ({ query }) => {
    await expectRefused(
      { method: 'POST', url: `/api/backup/clean${query}` },
      400,
      'VALIDATION_ERROR',
    );
  });
});

describe('after all of it', () => {
  it('every backup that was there is still listed, readable and on disk', async () => {
    expect(await listedBackups()).toEqual(existing);
    const files = await readdir(env.backupDir);
    for (const { id, filename } of existing) {
      expect(files).toContain(filename);
      const response = await api.app.inject({
        method: 'GET',
        url: `/api/backup/${id}`,
        headers: adminHeaders(),
      });
      expect(response.statusCode, response.body).toBe(200);
      expect(json<{ data: { id: string } }>(response).data.id).toBe(id);
    }
  });
});
