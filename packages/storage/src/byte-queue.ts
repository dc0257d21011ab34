const EMPTY = Buffer.alloc(0);

/**
 * Buffers awaiting a cut, kept as a list: concatenating the whole pending buffer on every small
 * write would be quadratic. `take` copies only when a cut spans several buffers.
 */
export class ByteQueue {
  #parts: Buffer[] = [];
  #head = 0;
  length = 0;

  push(buffer: Buffer): void {
    if (buffer.length === 0) return;
    this.#parts.push(buffer);
    this.length += buffer.length;
  }

  /** Removes and returns the first `count` bytes; `count` must not exceed `length`. */
  take(count: number): Buffer {
    const first = this.#parts[this.#head];
    let piece: Buffer;
    if (first === undefined || count === 0) {
      piece = EMPTY;
    } else if (first.length >= count) {
      piece = first.subarray(0, count);
      this.#consume(first, count);
    } else {
      piece = Buffer.allocUnsafe(count);
      let offset = 0;
      while (offset < count) {
        const part = this.#parts[this.#head] as Buffer;
        const used = Math.min(part.length, count - offset);
        part.copy(piece, offset, 0, used);
        offset += used;
        this.#consume(part, used);
      }
    }
    this.length -= count;
    if (this.#head === this.#parts.length) {
      this.#parts = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#parts.length) {
      this.#parts.splice(0, this.#head);
      this.#head = 0;
    }
    return piece;
  }

  #consume(part: Buffer, used: number): void {
    if (used === part.length) {
      // Cleared, not only skipped: a consumed slot must not keep its buffer alive.
      this.#parts[this.#head] = EMPTY;
      this.#head++;
    } else {
      this.#parts[this.#head] = part.subarray(used);
    }
  }
}
