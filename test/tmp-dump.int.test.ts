import { writeFileSync } from 'node:fs';
import { it } from 'vitest';
import { startApi } from './support/api.js';
import { createTestEnv } from './support/test-env.js';

it('dumps', async () => {
  const env = await createTestEnv('dump');
  const api = await startApi(env.env);
  const r = await api.app.inject({ url: '/docs/json' });
  writeFileSync('/tmp/spec.json', r.body);
  await api.close();
  await env.cleanup();
});
