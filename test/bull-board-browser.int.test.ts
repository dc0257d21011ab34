import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { type BrowserContext, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postJob, startApi, type TestApi, token, waitForJob } from './support/api.js';
import { createTestEnv, type TestEnv } from './support/test-env.js';
import { startWorker, type WorkerProcess } from './support/worker-process.js';

/**
 * The operators' board in a real browser: the real API on a local port, a real worker, two
 * backups done through the API; then a headless Chromium is refused while signed out, signs
 * in through the page's form, and sees the pgkeep queues and those jobs.
 */

const CHROMIUM = '/usr/bin/chromium';
const hasChromium = existsSync(CHROMIUM);
const ARTIFACTS = path.resolve(import.meta.dirname, '..', 'test-artifacts');

let env: TestEnv;
let api: TestApi;
let worker: WorkerProcess | undefined;
let context: BrowserContext;
let profile: string;
let baseUrl: string;
const jobIds: string[] = [];

describe.skipIf(!hasChromium)(
  hasChromium
    ? 'Bull Board in headless Chromium'
    : `Bull Board in headless Chromium (skipped: ${CHROMIUM} not found; apt-get install chromium)`,
  () => {
    beforeAll(async () => {
      env = await createTestEnv('browser');
      api = await startApi(env.env);
      await api.app.listen({ host: '127.0.0.1', port: 0 });
      baseUrl = `http://127.0.0.1:${(api.app.server.address() as AddressInfo).port}`;
      worker = await startWorker(env.env);
      for (const label of ['board one', 'board two']) {
        const jobId = await postJob(api, '/api/backup', { label });
        expect((await waitForJob(api, jobId)).state).toBe('completed');
        jobIds.push(jobId);
      }
      profile = await mkdtemp(path.join(os.tmpdir(), 'pgkeep-chromium-'));
      context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
        ],
      });
    });

    afterAll(async () => {
      await context?.close();
      if (profile) await rm(profile, { recursive: true, force: true });
      await worker?.stop();
      for (const queue of Object.values(api?.services.queues ?? {})) {
        await queue.obliterate({ force: true });
      }
      await api?.close();
      await env?.cleanup();
    });

    it('refuses the board while signed out, then shows the queues and jobs after sign-in', async () => {
      const page = await context.newPage();

      // Signed out: the board's page sends the browser to the sign-in page (303), and the
      // board's own API answers 401.
      const landing = await page.goto(`${baseUrl}/admin/queues`);
      expect(new URL(page.url()).pathname).toBe('/admin/login');
      const firstHop = await landing?.request().redirectedFrom()?.response();
      expect(firstHop?.status()).toBe(303);
      await page.getByText('Sign in to open the queues.').waitFor();
      const apiStatus = await page.evaluate(
        async () => (await fetch('/admin/queues/api/queues')).status,
      );
      expect(apiStatus).toBe(401);

      // Sign in through the page's form with an admin token.
      await page.locator('input[name="token"]').fill(token());
      await Promise.all([
        page.waitForURL(`${baseUrl}/admin/queues`),
        page.getByRole('button', { name: 'Sign in' }).click(),
      ]);
      const [cookie] = await context.cookies(`${baseUrl}/admin/queues`);
      expect(cookie).toMatchObject({
        name: 'pgkeep_admin',
        path: '/admin',
        httpOnly: true,
        sameSite: 'Strict',
        secure: false,
      });
      // Script on the page cannot read it.
      expect(await page.evaluate('document.cookie')).toBe('');

      // The overview lists every pgkeep queue.
      for (const name of ['backups', 'maintenance']) {
        await page.getByRole('link', { name, exact: true }).first().waitFor();
      }

      // The backups queue shows the jobs done through the API.
      await page.goto(`${baseUrl}/admin/queues/queue/backups?status=completed`);
      for (const jobId of jobIds) {
        await page.getByText(jobId, { exact: false }).first().waitFor();
      }
      await mkdir(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: path.join(ARTIFACTS, 'bull-board.png'), fullPage: true });

      // Read-only: the controls a writable board shows on this page are not there.
      for (const control of ['Retry all', 'Clean all', 'Add job']) {
        expect(await page.getByRole('button', { name: control, exact: true }).count()).toBe(0);
      }

      // The cookie opens /admin only: the JSON API still wants its Bearer header.
      const apiFromPage = await page.evaluate(async () => (await fetch('/api/backup')).status);
      expect(apiFromPage).toBe(401);

      // Signing out ends it: the board sends the browser back to the sign-in page.
      await page.goto(`${baseUrl}/admin/login`);
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.locator('input[name="token"]').waitFor();
      expect(await context.cookies(`${baseUrl}/admin/queues`)).toEqual([]);
      await page.goto(`${baseUrl}/admin/queues`);
      expect(new URL(page.url()).pathname).toBe('/admin/login');
    });

    it('renders the API docs in Swagger UI', async () => {
      const page = await context.newPage();
      await page.goto(`${baseUrl}/docs`);
      await page.getByText('pgkeep API', { exact: false }).first().waitFor();
      await page.getByText('/api/backup/{id}/restore').first().waitFor();
      await page
        .getByRole('button', { name: /Authorize/ })
        .first()
        .waitFor();
    });
  },
);
