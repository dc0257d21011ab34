import { constants } from 'node:fs';
import fs from 'node:fs/promises';

/** A file being written is `<name>.partial` until renamed; the leftover sweep removes these. */
export const PARTIAL_SUFFIX = '.partial';

/** Makes a rename or a removal in `dir` durable: fsync of the directory itself. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
