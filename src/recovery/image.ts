// Copying and hashing disk images without reading their holes.
import { createHash } from 'node:crypto';
import { alignedBuffer, type BlockFile } from '../native';

export const CHUNK_BYTES = 4 * 1024 * 1024;

export interface ReadableImage {
  readInto(buf: Buffer, offset: number): Promise<number>;
  seekData(offset: number): Promise<number>;
  seekHole(offset: number): Promise<number>;
  readonly blockDevice: boolean;
}

/** The data extents of an image: holes skipped for files, the whole range for devices. */
export async function* dataExtents(src: ReadableImage, size: number): AsyncGenerator<{ offset: number; length: number }> {
  if (src.blockDevice) {
    yield { offset: 0, length: size };
    return;
  }
  let pos = 0;
  while (pos < size) {
    const start = await src.seekData(pos);
    if (start < 0 || start >= size) return;
    const end = Math.min(size, await src.seekHole(start));
    yield { offset: start, length: end - start };
    pos = end;
  }
}

function isZero(buf: Buffer): boolean {
  // Compare 64 KiB at a time against a zero buffer: memcmp speed.
  const step = ZERO.length;
  for (let i = 0; i < buf.length; i += step) {
    const part = buf.subarray(i, Math.min(buf.length, i + step));
    if (part.compare(ZERO, 0, part.length) !== 0) return false;
  }
  return true;
}
const ZERO = Buffer.alloc(64 * 1024);

/**
 * Copies `size` bytes of src into dst (a new sparse file, or a device): the
 * source's holes are skipped, and all-zero chunks are not written, so the
 * copy stays sparse. Several chunks are in flight at once.
 */
export async function copyImage(src: ReadableImage, dst: BlockFile, size: number, onProgress?: (bytes: number) => void, signal?: AbortSignal): Promise<number> {
  let copied = 0;
  const inFlight = new Set<Promise<void>>();
  // Aligned, so that a target reads them through O_DIRECT: what is on the disk, not a cached page.
  const buffers: Buffer[] = Array.from({ length: 4 }, () => alignedBuffer(CHUNK_BYTES, false));
  for await (const ext of dataExtents(src, size)) {
    for (let off = ext.offset; off < ext.offset + ext.length; off += CHUNK_BYTES) {
      const len = Math.min(CHUNK_BYTES, ext.offset + ext.length - off);
      while (inFlight.size >= buffers.length) await Promise.race(inFlight);
      if (signal?.aborted) {
        await Promise.allSettled(inFlight);
        signal.throwIfAborted();
      }
      const buf = buffers.pop() as Buffer;
      const p = (async () => {
        try {
          const view = buf.subarray(0, len);
          const got = await src.readInto(view, off);
          if (got < len) view.fill(0, got);
          if (!isZero(view)) await dst.write(view, off);
          copied += len;
          onProgress?.(copied);
        } finally {
          buffers.push(buf);
        }
      })();
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p)).catch(() => undefined);
    }
  }
  await Promise.all(inFlight);
  return copied;
}

/** SHA-256 of the whole image, holes hashed as the zeros they read as. */
export async function hashImage(src: ReadableImage, size: number, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  const buf = alignedBuffer(CHUNK_BYTES, false);
  const zeros = Buffer.alloc(CHUNK_BYTES);
  let pos = 0;
  const feedZeros = (n: number): void => {
    while (n > 0) {
      const k = Math.min(n, zeros.length);
      hash.update(zeros.subarray(0, k));
      n -= k;
    }
  };
  for await (const ext of dataExtents(src, size)) {
    feedZeros(ext.offset - pos);
    for (let off = ext.offset; off < ext.offset + ext.length; off += CHUNK_BYTES) {
      signal?.throwIfAborted();
      const len = Math.min(CHUNK_BYTES, ext.offset + ext.length - off);
      const view = buf.subarray(0, len);
      const got = await src.readInto(view, off);
      if (got < len) view.fill(0, got);
      hash.update(view);
    }
    pos = ext.offset + ext.length;
  }
  feedZeros(size - pos);
  return hash.digest('hex');
}

/** A BlockFile seen as a readable image. */
export function imageOf(file: BlockFile): ReadableImage {
  return {
    blockDevice: file.blockDevice,
    readInto: (buf, offset) => file.read(buf, offset),
    seekData: (offset) => file.seekData(offset),
    seekHole: (offset) => file.seekHole(offset),
  };
}
