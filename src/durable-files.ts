// Files and folders that must survive a power cut once made. A write is
// durable once the file is flushed; a file or folder created or renamed is
// durable only once the directory that names it is flushed too.
import { closeSync, existsSync, fchmodSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

function fsyncPath(path: string, flags: 'r' | 'r+'): void {
  const fd = openSync(path, flags);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Flushes a directory: the entries created, renamed or removed in it are durable. */
export function fsyncDir(dir: string): void {
  fsyncPath(dir, 'r');
}

/** Flushes a file's data and metadata. */
export function fsyncFile(path: string): void {
  fsyncPath(path, 'r+');
}

/**
 * Makes `dir` and any missing parents, and flushes each new one's parent, so
 * the whole path survives a power cut. Returns whether anything was made.
 */
export function mkdirDurable(dir: string, mode?: number): boolean {
  const path = resolve(dir);
  if (existsSync(path)) return false;
  const missing: string[] = [];
  for (let p = path; !existsSync(p); p = dirname(p)) {
    missing.unshift(p);
    if (dirname(p) === p) break;
  }
  mkdirSync(path, { recursive: true, ...(mode === undefined ? {} : { mode }) });
  for (const made of missing) fsyncDir(dirname(made));
  return true;
}

/**
 * Writes a whole file so that a power cut leaves either the old content or
 * the new, never a part: a temporary file beside it, flushed, renamed over
 * it, and the directory flushed. `mode` is set exactly, whatever the umask.
 */
export function writeFileDurable(path: string, data: string | Buffer, mode: number): void {
  const temp = `${path}.tmp-${process.pid}`;
  const fd = openSync(temp, 'w', mode);
  try {
    fchmodSync(fd, mode);
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(temp, { force: true });
    throw err;
  }
  closeSync(fd);
  renameSync(temp, path);
  fsyncDir(dirname(path));
}
