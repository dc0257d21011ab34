import { execFile, execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * Builds the apps as `npm start` and the Docker image do (scripts/build.mjs, under a second),
 * so that the processes the tests start run what ships. Called once per run, from the
 * integration globalSetup: a dist left over from other sources is never tested.
 */
export async function buildApps(): Promise<void> {
  try {
    await promisify(execFile)(process.execPath, [path.join(root, 'scripts/build.mjs')], {
      cwd: root,
    });
  } catch (error) {
    const { stderr } = error as { stderr?: string };
    throw new Error(`scripts/build.mjs failed:\n${stderr || (error as Error).message}`);
  }
}

/** The node arguments of an app as operators run it: the built bundle, source-mapped. */
export function appArgs(app: 'api' | 'worker'): string[] {
  return ['--enable-source-maps', path.join(root, 'apps', app, 'dist', 'main.js')];
}

export interface ChildProcessInfo {
  pid: number;
  command: string;
  args: string;
}

/** The direct children of a process, as `ps` sees them (none: an empty list). */
export function childrenOf(pid: number): ChildProcessInfo[] {
  let out = '';
  try {
    out = execFileSync('ps', ['-o', 'pid=,comm=,args=', '--ppid', String(pid)], {
      encoding: 'utf8',
    });
  } catch {
    return []; // ps exits 1 when there are none
  }
  return out
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [childPid, command, ...args] = line.trim().split(/\s+/);
      return { pid: Number(childPid), command: command ?? '', args: args.join(' ') };
    });
}

/** Alive and not a zombie waiting to be reaped. */
export async function isRunning(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
