import { closeSync, openSync, writeSync } from 'node:fs';

/** Overwrites bytes of a file in place: damage for the tests to find. */
export function patch(path: string, offset: number, bytes: Buffer): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}
