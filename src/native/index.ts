// The typed face of the native addon: nothing else in src/ touches the binding.
import { binding, type RawStatfs } from './binding';

export { BlockFile, type OpenBlockFileOptions } from './block-file';
export { IoPriority } from './io-priority';

/**
 * The applier's reads and writes (targets, undo logs, the ingest log read
 * back) reach the disk in pieces of at most this size. An ingest batch
 * waiting for its write and flush, that is an acknowledgement, then waits
 * behind one piece at the disk rather than a whole 4 MiB cycle. fio on this
 * kind of VM: a 200 MB/s writer with fdatasync beside a 600 MB/s one, p99
 * write latency 1.3-1.5 ms with the big writer's I/O at 4 MiB, 0.35-0.4 ms at
 * 1 MiB, at the same throughput (docs/decisions/0007-acknowledgements-first.md).
 */
export const BACKGROUND_IO_PIECE_BYTES = 1024 * 1024;

/** O_DIRECT alignment for memory, lengths and offsets. */
export const DIRECT_ALIGNMENT: number = binding.directAlignment;

export function alignUp(n: number, alignment: number = DIRECT_ALIGNMENT): number {
  return Math.ceil(n / alignment) * alignment;
}

/** The memory alignedBuffer() handed out: a view into one of them on a 4096 boundary is aligned too. */
const alignedStores = new WeakSet<ArrayBufferLike>();

/**
 * Memory starting on a 4096-byte boundary, for O_DIRECT: zero-filled, unless
 * `zero` is false because the caller overwrites all of it (a read).
 */
export function alignedBuffer(size: number, zero = true): Buffer {
  const buf = binding.alignedBuffer(size, zero);
  alignedStores.add(buf.buffer);
  return buf;
}

/** Whether O_DIRECT takes this buffer as it is: aligned memory of a whole number of blocks. */
export function isDirectAligned(buf: Buffer): boolean {
  return buf.byteOffset % DIRECT_ALIGNMENT === 0 && buf.length % DIRECT_ALIGNMENT === 0 && alignedStores.has(buf.buffer);
}

/** CRC-32C (Castagnoli). Pass a previous result as `seed` to continue over more bytes. */
export function crc32c(data: Uint8Array, seed = 0): number {
  return binding.crc32c(data, seed);
}

/** The table-driven path, always available; the tests hold it equal to the hardware path. */
export function crc32cSoftware(data: Uint8Array, seed = 0): number {
  return binding.crc32cSoftware(data, seed);
}

/** The SSE4.2 path, or undefined on a CPU without it. */
export const crc32cHardware: ((data: Uint8Array, seed?: number) => number) | undefined = binding.crc32cHardware;

/** Which path `crc32c` uses on this machine: chosen once, when the addon loads. */
export const crc32cImplementation: 'sse4.2' | 'software' = binding.crc32cImplementation;

export type FilesystemStats = RawStatfs;

/** Filesystem type (by magic number), capacity, free space and the read-only flag for `path`. */
export function statfs(path: string): Promise<FilesystemStats> {
  return binding.statfs(path);
}

/**
 * Gives the whole pages inside `buffer` back to the system, keeping the
 * memory: it reads as zeros after, and costs RSS again only where written.
 * Returns the bytes given back.
 */
export function discardPages(buffer: Buffer): number {
  return binding.discardPages(buffer);
}

/**
 * Frees a buffer's memory now instead of at V8's next collection, when the
 * buffer is the whole of its ArrayBuffer: that ArrayBuffer is detached, and
 * every view of it reads as empty after. A view into a larger ArrayBuffer is
 * left alone. Returns the bytes freed (0 when left alone).
 */
export function releaseBuffer(buffer: Buffer): number {
  return binding.releaseBuffer(buffer);
}

/**
 * Makes the C allocator hand blocks of `thresholdBytes` or more back to the
 * system when they are freed (glibc's mmap threshold, fixed). The daemon's
 * payload buffers are such blocks; without it its RSS keeps its peak.
 */
export function returnFreedMemory(thresholdBytes: number): boolean {
  return binding.returnFreedMemory(thresholdBytes);
}

/** One datagram to systemd's $NOTIFY_SOCKET; false when not started by systemd. */
export function sdNotify(state: string): boolean {
  return binding.sdNotify(state);
}
