// A test's own writes, copy-on-write in 4 KiB blocks on the retention
// volume: a sparse data file as big as the disk, and an allocation map
// that is a log of block ranges. A flush makes the data durable, then
// appends the ranges allocated since and makes them durable: after a crash
// a block is the test's only if the flush that covered it finished; any
// other reads as the point again, as an unflushed write may.
//
// Map entries are 16 bytes: first block (u64), block count (u32, bit 31 set
// for blocks that read as zeros), CRC-32C of the twelve before it.
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fsyncDir } from '../durable-files';
import { BlockFile, crc32c } from '../native';

export const SCRATCH_BLOCK = 4096;
const ENTRY = 16;
const ZERO_FLAG = 0x80000000;
/** Blocks per bitmap page: a page is 8 KiB and maps 256 MiB of disk. */
const PAGE_BLOCKS = 65536;

export class ScratchFullError extends Error {
  readonly code = 'scratch-full';
  constructor(message: string) {
    super(message);
    this.name = 'ScratchFullError';
  }
}

/** One bit per block, by pages allocated as blocks are first set. */
class BlockBitmap {
  private readonly pages = new Map<number, Uint8Array>();
  count = 0;

  has(block: number): boolean {
    const page = this.pages.get(Math.floor(block / PAGE_BLOCKS));
    if (page === undefined) return false;
    const i = block % PAGE_BLOCKS;
    return ((page[i >> 3] as number) & (1 << (i & 7))) !== 0;
  }

  set(block: number, on: boolean): void {
    const key = Math.floor(block / PAGE_BLOCKS);
    let page = this.pages.get(key);
    if (page === undefined) {
      if (!on) return;
      page = new Uint8Array(PAGE_BLOCKS / 8);
      this.pages.set(key, page);
    }
    const i = block % PAGE_BLOCKS;
    const bit = 1 << (i & 7);
    const was = ((page[i >> 3] as number) & bit) !== 0;
    if (was === on) return;
    page[i >> 3] = on ? (page[i >> 3] as number) | bit : (page[i >> 3] as number) & ~bit;
    this.count += on ? 1 : -1;
  }
}

export class Scratch {
  /** Blocks that are the test's: they read from the scratch, not the point. */
  private readonly owned = new BlockBitmap();
  /** Of those, the ones that read as zeros (trimmed or zeroed): a hole in the data file, no bytes stored. */
  private readonly zeroed = new BlockBitmap();
  /** Allocated since the last flush: [first block, count, zero]. */
  private pending: Array<[number, number, boolean]> = [];

  private constructor(
    readonly dir: string,
    private readonly data: BlockFile,
    private readonly map: BlockFile,
    private mapBytes: number,
    readonly sizeBytes: number,
    public quotaBytes: number,
  ) {}

  static async open(dir: string, sizeBytes: number, quotaBytes: number): Promise<Scratch> {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const fresh = !existsSync(join(dir, 'scratch.map'));
    const data = await BlockFile.open(join(dir, 'scratch.img'), { create: true, size: sizeBytes });
    const map = await BlockFile.open(join(dir, 'scratch.map'), { create: true });
    if (fresh) {
      await Promise.all([data.sync(), map.sync()]);
      fsyncDir(dir);
    }
    const entries = readFileSync(join(dir, 'scratch.map'));
    const s = new Scratch(dir, data, map, 0, sizeBytes, quotaBytes);
    // A torn last entry (a crash while it was appended) and anything after it never counted.
    let at = 0;
    for (; at + ENTRY <= entries.length; at += ENTRY) {
      if (crc32c(entries.subarray(at, at + 12)) !== entries.readUInt32LE(at + 12)) break;
      const first = Number(entries.readBigUInt64LE(at));
      const raw = entries.readUInt32LE(at + 8);
      s.mark(first, raw & 0x7fffffff, (raw & ZERO_FLAG) !== 0);
    }
    s.mapBytes = at;
    return s;
  }

  /** Bytes the test's writes store: trimmed and zeroed blocks hold none, and count for nothing. */
  get usedBytes(): number {
    return (this.owned.count - this.zeroed.count) * SCRATCH_BLOCK;
  }

  has(block: number): boolean {
    return this.owned.has(block);
  }

  /** Blocks in [first, first+count) that would store data anew: not the test's yet, or the test's zeros. */
  newDataBlocks(first: number, count: number): number {
    let n = 0;
    for (let b = first; b < first + count; b++) if (!this.owned.has(b) || this.zeroed.has(b)) n++;
    return n;
  }

  private mark(first: number, count: number, zero: boolean): void {
    for (let b = first; b < first + count; b++) {
      this.owned.set(b, true);
      this.zeroed.set(b, zero);
    }
  }

  /** Refuses `count` more blocks of data past the quota. */
  reserve(count: number): void {
    if (count > 0 && this.usedBytes + count * SCRATCH_BLOCK > this.quotaBytes) {
      throw new ScratchFullError(`the test's scratch would hold ${this.usedBytes + count * SCRATCH_BLOCK} bytes, past its quota of ${this.quotaBytes} (--scratch-bytes)`);
    }
  }

  /** Whole blocks of the test's data at a block boundary (the disk's last one may be short). */
  async write(offset: number, data: Buffer, durable: boolean): Promise<void> {
    const first = offset / SCRATCH_BLOCK;
    // The disk's last block may be short.
    const count = Math.ceil(data.length / SCRATCH_BLOCK);
    this.reserve(this.newDataBlocks(first, count));
    await this.data.write(data, offset);
    this.noteAllocated(first, count, false);
    if (durable) await this.flush();
  }

  /** Whole blocks that read as zeros: the data file's hole punched there; no bytes stored, nothing counted. */
  async zero(offset: number, length: number, durable: boolean): Promise<void> {
    const first = offset / SCRATCH_BLOCK;
    const count = Math.ceil(length / SCRATCH_BLOCK);
    await this.data.punchHole(offset, length);
    this.noteAllocated(first, count, true);
    if (durable) await this.flush();
  }

  private noteAllocated(first: number, count: number, zero: boolean): void {
    let changed = false;
    for (let b = first; b < first + count && !changed; b++) changed = !this.owned.has(b) || this.zeroed.has(b) !== zero;
    this.mark(first, count, zero);
    // The map replays in order: a change of kind (data over zeros, zeros over data) is logged too.
    if (changed) this.pending.push([first, count, zero]);
  }

  async read(buf: Buffer, offset: number): Promise<void> {
    const got = await this.data.read(buf, offset);
    if (got < buf.length) buf.fill(0, got);
  }

  /** The data first, then the map of what it holds. One flush at a time: the map is appended in order. */
  flush(): Promise<void> {
    const next = this.flushing.then(() => this.flushNow());
    this.flushing = next.catch(() => undefined);
    return next;
  }

  private flushing: Promise<void> = Promise.resolve();

  private async flushNow(): Promise<void> {
    const pending = this.pending;
    this.pending = [];
    await this.data.datasync();
    if (pending.length === 0) return;
    const out = Buffer.alloc(pending.length * ENTRY);
    pending.forEach(([first, count, zero], i) => {
      const at = i * ENTRY;
      out.writeBigUInt64LE(BigInt(first), at);
      out.writeUInt32LE((count | (zero ? ZERO_FLAG : 0)) >>> 0, at + 8);
      out.writeUInt32LE(crc32c(out.subarray(at, at + 12)), at + 12);
    });
    try {
      await this.map.write(out, this.mapBytes);
      await this.map.datasync();
      this.mapBytes += out.length;
    } catch (err) {
      this.pending.unshift(...pending);
      throw err;
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.data.close(), this.map.close()]);
  }

  /** Closes and deletes the scratch. */
  async destroy(): Promise<void> {
    await this.close().catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
