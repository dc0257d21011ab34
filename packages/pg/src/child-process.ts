import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';

const STDERR_TAIL_BYTES = 4096;

function findOnPath(command: string, pathVar: string | undefined): string | undefined {
  for (const dir of (pathVar ?? '/usr/local/bin:/usr/bin:/bin').split(path.delimiter)) {
    const candidate = path.join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

let setprivPath: string | null | undefined;

/**
 * On Linux, children are started through `setpriv --pdeathsig SIGKILL` so that the kernel kills
 * them when the worker dies, even by SIGKILL: a re-queued job must never race an orphaned
 * pg_dump or pg_restore. Where setpriv is missing the child starts directly.
 */
function deathSignalPrefix(): string[] {
  if (setprivPath === undefined) {
    setprivPath =
      process.platform === 'linux' ? (findOnPath('setpriv', process.env.PATH) ?? null) : null;
  }
  return setprivPath ? [setprivPath, '--pdeathsig', 'SIGKILL', '--'] : [];
}

let stdbufPath: string | null | undefined;

/**
 * `stdbuf -o<size>` where coreutils' stdbuf exists: the child's stdio writes its stdout in
 * blocks of that size instead of the 4 kB a pipe gets by default. A reader in this process then
 * gets a few large chunks instead of many small ones (pg_dump: 60 kB instead of 10 kB each).
 */
function stdoutBufferPrefix(size: string | undefined): string[] {
  if (!size) return [];
  if (stdbufPath === undefined) {
    stdbufPath =
      process.platform === 'linux' ? (findOnPath('stdbuf', process.env.PATH) ?? null) : null;
  }
  return stdbufPath ? [stdbufPath, `-o${size}`] : [];
}

export interface ChildOptions {
  env: NodeJS.ProcessEnv;
  /** The child's stdout buffer (stdbuf), e.g. `1M`, when its output is read by this process. */
  stdoutBuffer?: string | undefined;
  signal?: AbortSignal | undefined;
  /** A Readable with a file descriptor (another child's stdout) is handed over as it is. */
  stdin?: 'ignore' | 'pipe' | Readable;
  /** An open file descriptor the child writes its stdout to directly (default: a pipe). */
  stdout?: number;
  /**
   * Called for each line the child writes to stderr (progress of pg_restore --verbose); lines
   * for which it returns true are progress, kept out of the stderr tail of an error.
   */
  onStderrLine?: (line: string) => boolean | undefined;
}

export class ChildProcessError extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly signalName: NodeJS.Signals | null,
    readonly stderrTail: string,
  ) {
    const how = exitCode !== null ? `exited with code ${exitCode}` : `was killed by ${signalName}`;
    super(`${command} ${how}${stderrTail ? `: ${stderrTail}` : ''}`);
    this.name = 'ChildProcessError';
  }
}

export interface RunningChild {
  child: ChildProcess;
  /** Resolves when the child exits with 0; rejects with a ChildProcessError otherwise. */
  done: Promise<void>;
  stderrTail(): string;
}

/** Starts `command` with an argument array (never a shell), collecting the tail of stderr. */
export function startChild(command: string, args: string[], options: ChildOptions): RunningChild {
  const prefix = [...deathSignalPrefix(), ...stdoutBufferPrefix(options.stdoutBuffer)];
  const [file, ...fileArgs] =
    prefix.length > 0 ? [...prefix, command, ...args] : [command, ...args];
  const child = spawn(file as string, fileArgs, {
    env: options.env,
    stdio: [options.stdin ?? 'ignore', options.stdout ?? 'pipe', 'pipe'],
    signal: options.signal,
    killSignal: 'SIGTERM',
  });
  let tail = '';
  let partialLine = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    const onLine = options.onStderrLine;
    if (!onLine) {
      tail = (tail + chunk).slice(-STDERR_TAIL_BYTES);
      return;
    }
    const lines = (partialLine + chunk).split('\n');
    partialLine = lines.pop() ?? '';
    for (const line of lines) {
      if (!onLine(line)) tail = `${tail}${line}\n`.slice(-STDERR_TAIL_BYTES);
    }
  });
  const stderrTail = () => `${tail}${partialLine}`.trim();
  const done = new Promise<void>((resolve, reject) => {
    child.once('error', (error) => {
      // An abort also lands here (AbortError); the close handler below reports the exit.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        reject(new ChildProcessError(command, null, null, `${command} not found on PATH`));
      }
    });
    child.once('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new ChildProcessError(command, code, signal, stderrTail()));
    });
  });
  // `done` is always awaited by callers, but may settle before they get there.
  done.catch(() => {});
  return { child, done, stderrTail };
}

/** Runs a short command to the end and returns its stdout. */
export async function runChild(command: string, args: string[], options: ChildOptions) {
  const running = startChild(command, args, options);
  let stdout = '';
  running.child.stdout?.setEncoding('utf8');
  running.child.stdout?.on('data', (chunk: string) => {
    stdout += chunk;
  });
  await running.done;
  return stdout;
}
