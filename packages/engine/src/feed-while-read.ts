import { finished, Writable } from 'node:stream';

/**
 * A child's stdin as the end of a pipeline that the child may leave early. pg_restore exits
 * as soon as it has read an archive's last entry, without waiting for the end of its input;
 * node then destroys the child's stdin, and a pipeline into it fails with "Premature close"
 * (or EPIPE) although pg_restore read every byte it needed. Here the child going away is not
 * an error: what is left of the input is read and discarded, so the stages before this one
 * (a decompressor checking its checksums) still see every byte, and the child's exit status
 * alone says whether it read well.
 *
 * When the pipeline fails or is aborted, the child's stdin is destroyed too: the child sees
 * the end of its input instead of waiting for more.
 */
export function feedWhileRead(stdin: Writable): Writable {
  let open = !stdin.destroyed;
  const gone = () => {
    open = false;
  };
  // EPIPE, or the stream destroyed when the child exits: the child no longer reads.
  stdin.on('error', gone);
  stdin.on('close', gone);
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      if (!open || stdin.destroyed) {
        callback();
        return;
      }
      if (stdin.write(chunk)) {
        callback();
        return;
      }
      // The child is behind: wait until it has taken the data in, or has gone away.
      const resume = () => {
        stdin.off('drain', resume);
        stdin.off('close', resume);
        stdin.off('error', resume);
        callback();
      };
      stdin.on('drain', resume);
      stdin.on('close', resume);
      stdin.on('error', resume);
    },
    final(callback) {
      if (!open || stdin.destroyed) {
        callback();
        return;
      }
      // Finished or closed early: either way the input was handed over as far as it was read.
      finished(stdin, () => callback());
      stdin.end();
    },
    destroy(error, callback) {
      if (error) stdin.destroy();
      callback(error);
    },
  });
}
