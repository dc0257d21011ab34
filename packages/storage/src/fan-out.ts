import { PassThrough, type Readable } from 'node:stream';

function drainedOrClosed(branch: PassThrough): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      branch.off('drain', done);
      branch.off('close', done);
      resolve();
    };
    branch.on('drain', done);
    branch.on('close', done);
  });
}

/**
 * One source read once, its bytes written to `count` branches at the pace of the slowest live
 * branch (memory stays bounded by the branches' buffers). A branch its consumer destroyed drops
 * out and the others go on; the source is destroyed when no branch is left, and its error
 * reaches every branch.
 */
export function fanOut(source: Readable, count: number): Readable[] {
  if (count === 1) return [source];
  const branches = Array.from(
    { length: count },
    () => new PassThrough({ highWaterMark: 1024 * 1024 }),
  );
  const live = () => branches.filter((branch) => !branch.destroyed && !branch.writableEnded);
  source.on('data', (chunk: Buffer) => {
    const targets = live();
    if (targets.length === 0) {
      source.destroy(new Error('no copy is being written any more'));
      return;
    }
    const blocked: Promise<void>[] = [];
    for (const branch of targets) {
      if (!branch.write(chunk)) blocked.push(drainedOrClosed(branch));
    }
    if (blocked.length > 0) {
      source.pause();
      void Promise.all(blocked).then(() => {
        if (!source.destroyed) source.resume();
      });
    }
  });
  source.once('end', () => {
    for (const branch of live()) branch.end();
  });
  source.once('error', (error) => {
    for (const branch of branches) branch.destroy(error);
  });
  // A branch that goes away while the source waits for it must not stall the others.
  for (const branch of branches) {
    branch.once('close', () => {
      if (live().length === 0 && !source.readableEnded) source.destroy();
    });
  }
  return branches;
}
