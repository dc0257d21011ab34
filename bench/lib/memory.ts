import { readdirSync, readFileSync } from 'node:fs';

/** kB of a /proc/<pid>/status field (VmRSS, VmHWM), or 0 when the process is gone. */
export function statusKb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
    return match?.[1] ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

/** CPU time (user + system) a process has used so far, in ms (0 when it is gone). */
export function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return 0;
  }
}

/** Every descendant of `pid` (children of all its threads, recursively). */
export function descendants(pid: number): number[] {
  const found: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const current = queue.shift() as number;
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${current}/task`);
    } catch {
      continue;
    }
    for (const task of tasks) {
      let text = '';
      try {
        text = readFileSync(`/proc/${current}/task/${task}/children`, 'utf8');
      } catch {
        continue;
      }
      for (const child of text.split(' ')) {
        const id = Number(child);
        if (id > 0 && !found.includes(id)) {
          found.push(id);
          queue.push(id);
        }
      }
    }
  }
  return found;
}

function commandName(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}

export interface RssPeaks {
  /** Peak RSS of the process itself, sampled (MB). */
  selfPeakMb: number;
  /** Peak of the summed RSS of all its descendants at one instant (MB). */
  childrenPeakMb: number;
  /** Peak of self + descendants at one instant (MB). */
  totalPeakMb: number;
  /** Peak RSS per child command name (MB). */
  byCommandMb: Record<string, number>;
  samples: number;
}

/**
 * Samples the RSS of a process and of its children every `intervalMs` (reads of /proc, a few
 * microseconds each) until stopped.
 */
export class RssSampler {
  private timer: NodeJS.Timeout | undefined;
  private peaks: RssPeaks = {
    selfPeakMb: 0,
    childrenPeakMb: 0,
    totalPeakMb: 0,
    byCommandMb: {},
    samples: 0,
  };

  constructor(
    private readonly pid: number,
    private readonly intervalMs = 50,
  ) {}

  private sample(): void {
    const self = statusKb(this.pid, 'VmRSS') / 1024;
    let children = 0;
    const own = commandName(this.pid);
    for (const child of descendants(this.pid)) {
      const name = commandName(child);
      // A child caught between fork and exec is still a copy of its parent (shared pages).
      if (name === own) continue;
      const rss = statusKb(child, 'VmRSS') / 1024;
      children += rss;
      this.peaks.byCommandMb[name] = Math.max(this.peaks.byCommandMb[name] ?? 0, rss);
    }
    this.peaks.samples += 1;
    this.peaks.selfPeakMb = Math.max(this.peaks.selfPeakMb, self);
    this.peaks.childrenPeakMb = Math.max(this.peaks.childrenPeakMb, children);
    this.peaks.totalPeakMb = Math.max(this.peaks.totalPeakMb, self + children);
  }

  start(): this {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    return this;
  }

  stop(): RssPeaks {
    if (this.timer) clearInterval(this.timer);
    this.sample();
    return this.peaks;
  }
}

/** Peaks over several sampled runs, as a section records them (see WorkerMemory). */
export interface SectionPeaks {
  selfPeakMb: number;
  childrenPeakMb: number;
  treePeakMb: number;
  byCommandMb: Record<string, number>;
}

export const emptyPeaks = (): SectionPeaks => ({
  selfPeakMb: 0,
  childrenPeakMb: 0,
  treePeakMb: 0,
  byCommandMb: {},
});

/** `into` raised to one more run's peaks. */
export function mergePeaks(into: SectionPeaks, peaks: RssPeaks): void {
  into.selfPeakMb = Math.max(into.selfPeakMb, peaks.selfPeakMb);
  into.childrenPeakMb = Math.max(into.childrenPeakMb, peaks.childrenPeakMb);
  into.treePeakMb = Math.max(into.treePeakMb, peaks.totalPeakMb);
  for (const [name, mb] of Object.entries(peaks.byCommandMb)) {
    into.byCommandMb[name] = Math.max(into.byCommandMb[name] ?? 0, mb);
  }
}
