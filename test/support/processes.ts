import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';

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
