// SHA-256 per block of a target's content, for delta resync (docs/protocol.md).
// Holes are not read: a block that lies wholly in one hashes as zeros.
import { createHash } from 'node:crypto';
import { alignUp, alignedBuffer } from '../native';
import { dataExtents, type ReadableImage } from '../recovery/image';

const CHUNK = 4 * 1024 * 1024;

export async function blockChecksums(src: ReadableImage, diskBytes: number, offset: number, length: number, blockBytes: number): Promise<string[]> {
  const end = Math.min(diskBytes, offset + length);
  const extents: Array<{ offset: number; length: number }> = [];
  for await (const e of dataExtents(src, diskBytes)) {
    if (e.offset + e.length <= offset) continue;
    if (e.offset >= end) break;
    extents.push(e);
  }
  const zeroHashes = new Map<number, string>();
  const zeroHash = (n: number): string => {
    let h = zeroHashes.get(n);
    if (h === undefined) {
      h = createHash('sha256').update(Buffer.alloc(n)).digest('hex');
      zeroHashes.set(n, h);
    }
    return h;
  };
  const hasData = (from: number, to: number): boolean => extents.some((e) => e.offset < to && e.offset + e.length > from);
  const out: string[] = [];
  const chunkBytes = Math.max(CHUNK - (CHUNK % blockBytes), blockBytes);
  // Two buffers: the next chunk is read while this one is hashed.
  const buffers = [alignedBuffer(alignUp(chunkBytes), false), alignedBuffer(alignUp(chunkBytes), false)];
  const read = async (c: number, buf: Buffer): Promise<Buffer | null> => {
    const cEnd = Math.min(end, c + chunkBytes);
    if (!hasData(c, cEnd)) return null;
    const view = buf.subarray(0, cEnd - c);
    const got = await src.readInto(view, c);
    if (got < view.length) view.fill(0, got);
    return view;
  };
  let turn = 0;
  let next = offset < end ? read(offset, buffers[0] as Buffer) : null;
  for (let c = offset; c < end; c += chunkBytes) {
    const view = await (next as Promise<Buffer | null>);
    turn ^= 1;
    next = c + chunkBytes < end ? read(c + chunkBytes, buffers[turn] as Buffer) : null;
    if (view === null) {
      const cEnd = Math.min(end, c + chunkBytes);
      for (let b = c; b < cEnd; b += blockBytes) out.push(zeroHash(Math.min(blockBytes, cEnd - b)));
      continue;
    }
    for (let b = 0; b < view.length; b += blockBytes) {
      out.push(createHash('sha256').update(view.subarray(b, Math.min(view.length, b + blockBytes))).digest('hex'));
    }
  }
  await next?.catch(() => undefined);
  return out;
}
