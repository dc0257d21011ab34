import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

export interface Stage {
  command: string;
  args: string[];
}

export interface PipelineOptions {
  env: NodeJS.ProcessEnv;
  /** File read by the first stage's stdin (default: none). */
  stdinFile?: string;
  /** File the last stage's stdout goes to (default: /dev/null). */
  stdoutFile?: string;
}

function waitForExit(child: ChildProcess, label: string, stderr: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${label} exited with ${code ?? signal}: ${stderr().slice(-2000)}`));
    });
  });
}

/**
 * Runs `a | b | …` the way a shell does: argument arrays, no shell, each stage's stdout handed
 * to the next stage as its stdin (a kernel pipe, no copy through this process). Resolves with
 * the wall time in ms once every stage exited with 0.
 */
export async function runPipeline(stages: Stage[], options: PipelineOptions): Promise<number> {
  const started = performance.now();
  const inFd = options.stdinFile ? openSync(options.stdinFile, 'r') : 'ignore';
  const outFd = openSync(options.stdoutFile ?? '/dev/null', 'w');
  const exits: Promise<void>[] = [];
  try {
    let previous: ChildProcess | undefined;
    stages.forEach((stage, index) => {
      const last = index === stages.length - 1;
      const stdin = previous?.stdout ?? inFd;
      const child = spawn(stage.command, stage.args, {
        env: options.env,
        stdio: [stdin, last ? outFd : 'pipe', 'pipe'],
      });
      // The next stage holds its own copy of the pipe; ours would only compete for the data.
      previous?.stdout?.destroy();
      let tail = '';
      child.stderr?.setEncoding('utf8');
      child.stderr?.on('data', (chunk: string) => {
        tail = (tail + chunk).slice(-4000);
      });
      exits.push(waitForExit(child, stage.command, () => tail));
      previous = child;
    });
  } finally {
    if (typeof inFd === 'number') closeSync(inFd);
    closeSync(outFd);
  }
  await Promise.all(exits);
  return performance.now() - started;
}

/** One command to the end; its stdout as text. */
export async function runTool(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<string> {
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    out += chunk;
  });
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    err = (err + chunk).slice(-4000);
  });
  await waitForExit(child, command, () => err);
  return out;
}

/** Bytes a command writes to stdout (counted here, then dropped). */
export async function countOutputBytes(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<number> {
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let bytes = 0;
  child.stdout?.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
  });
  let err = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    err = (err + chunk).slice(-4000);
  });
  await waitForExit(child, command, () => err);
  return bytes;
}
