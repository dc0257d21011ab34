import { execFile } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { root } from './support/processes.js';

/**
 * The commands as operators run them (the bundles `npm run token`, `catalog:rebuild` and
 * `decrypt` build and start): `--help` answers on stdout with exit 0, a wrong call says what
 * is wrong in one line plus the usage on stderr with exit 64 (EX_USAGE), never a stack trace,
 * and before reading any configuration (none is given here).
 */

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

function run(bundle: string, args: string[]): Promise<Outcome> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--enable-source-maps', path.join(root, bundle), ...args],
      // Not the repository: its .env, if any, is not read.
      { cwd: os.tmpdir(), env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, timeout: 30_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

const commands = [
  {
    name: 'token',
    bundle: 'apps/api/dist/cli/token.js',
    options: ['--role', '--sub', '--permission', '--expires'],
    help: [['--help'], ['-h'], ['--sub', 'ops', '-h']],
    wrong: [
      { call: ['--bogus'], says: "Unknown option '--bogus'" },
      { call: ['--expires'], says: "Option '--expires <value>' argument missing" },
      { call: ['--expires', 'forever'], says: '--expires "forever": not a duration' },
      { call: ['--expires', '0h'], says: '--expires "0h": not a duration' },
      { call: ['--sub', ' '], says: '--sub is empty' },
      { call: ['admin'], says: "Unexpected argument 'admin'" },
    ],
  },
  {
    name: 'catalog:rebuild',
    bundle: 'apps/worker/dist/cli/catalog.js',
    options: ['--dry-run'],
    help: [['--help'], ['-h'], ['--dry-run', '--help']],
    wrong: [
      { call: ['--force'], says: "Unknown option '--force'" },
      { call: ['--dry-run=yes'], says: "Option '--dry-run' does not take an argument" },
      { call: ['now'], says: "Unexpected argument 'now'" },
    ],
  },
  {
    name: 'decrypt',
    bundle: 'apps/worker/dist/cli/decrypt.js',
    options: ['--in', '--out'],
    // Help comes before the check for the required options.
    help: [['--help'], ['-h'], ['--in', 'a.enc', '--help']],
    wrong: [
      { call: ['--key', 'x'], says: "Unknown option '--key'" },
      { call: ['--in'], says: "Option '--in <value>' argument missing" },
      { call: ['--in', 'a.enc'], says: '--out is required' },
      { call: ['--out', '-'], says: '--in is required' },
      { call: [], says: '--in is required' },
    ],
  },
];

describe.each(commands)('npm run $name', ({ name, bundle, options, help, wrong }) => {
  it.each(help.map((call) => ({ call })))(
    'answers $call with its usage on stdout and exit 0',
    async ({ call }) => {
      const outcome = await run(bundle, call);
      expect(outcome, outcome.stderr).toMatchObject({ code: 0, stderr: '' });
      expect(outcome.stdout.startsWith(`usage: npm run ${name}`)).toBe(true);
      for (const option of [...options, '-h, --help']) expect(outcome.stdout).toContain(option);
    },
  );

  it.each(wrong)('refuses $call with one line, the usage and exit 64', async ({ call, says }) => {
    const outcome = await run(bundle, call);
    expect(outcome.code, outcome.stderr).toBe(64);
    expect(outcome.stdout).toBe('');
    const [first, blank, usage] = outcome.stderr.split('\n');
    expect(first?.startsWith(`${name}: ${says}`)).toBe(true);
    expect(blank).toBe('');
    expect(usage?.startsWith(`usage: npm run ${name}`)).toBe(true);
    // No stack trace, no source location.
    expect(outcome.stderr).not.toMatch(/^\s+at /m);
    expect(outcome.stderr).not.toMatch(/\.(ts|js):\d+/);
  });
});
