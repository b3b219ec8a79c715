// The source disk of a simulated pair: a compact log of what was streamed,
// from which the disk at any seq is recomputed. No copy of the data is kept:
// a write's payload is a pure function of (pair, seed, seq, length).
import { createHash } from 'node:crypto';

const POOL_BYTES = 12 * 1024 * 1024;

export type ModelItem =
  | { seq: number; time: number; kind: 'write'; offset: number; length: number; resync: boolean; fromImage: boolean }
  | { seq: number; time: number; kind: 'tag'; tagKind: 'app' | 'crash'; name: string; group: string | null }
  | { seq: number; time: number; kind: 'tick' | 'resync-start' | 'resync-end' };

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

export class SourceModel {
  readonly pairId: string;
  readonly diskBytes: number;
  readonly seed: number;
  readonly items: ModelItem[] = [];
  /**
   * Items up to here are not known: the agent held them before this model
   * took the pair over (adopt). The disk is known again once a resync after
   * them has ended.
   */
  private baseSeq = 0;
  private readonly pool: Buffer;
  private readonly pairHash: number;

  constructor(pairId: string, diskBytes: number, seed: number) {
    this.pairId = pairId;
    this.diskBytes = diskBytes;
    this.seed = seed;
    this.pairHash = fnv1a(`${pairId}/${seed}`);
    this.pool = Buffer.allocUnsafe(POOL_BYTES);
    let x = this.pairHash || 1;
    for (let i = 0; i < POOL_BYTES; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      this.pool.writeUInt32LE(x >>> 0, i);
    }
  }

  get lastSeq(): number {
    return this.baseSeq + this.items.length;
  }

  /** The first seq this model knows (1, or the one after an adopted pair's). */
  get firstSeq(): number {
    return this.baseSeq + 1;
  }

  item(seq: number): ModelItem {
    const it = this.items[seq - this.baseSeq - 1];
    if (!it) throw new RangeError(`${this.pairId} has no item ${seq}`);
    return it;
  }

  add(item: ModelItem): void {
    if (item.seq !== this.lastSeq + 1) throw new RangeError(`model of ${this.pairId}: item ${item.seq} after ${this.lastSeq}`);
    this.items.push(item);
  }

  /**
   * Takes over a pair whose agent holds `durableSeq` items this model never
   * streamed: the next item is `durableSeq + 1`, and the disk counts as all
   * zeros, which a delta resync then makes the target hold.
   */
  adopt(durableSeq: number): void {
    if (this.items.length > 0) throw new RangeError(`model of ${this.pairId} already holds items`);
    this.baseSeq = durableSeq;
  }

  /** The payload of a generated write: a slice of the pair's pool with seq and pair stamped in every sector. */
  payload(seq: number, length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    this.payloadInto(out, 0, seq, length);
    return out;
  }

  /** Writes the payload of (seq, length) into `into` at `at`: an image is built without a copy per write. */
  private payloadInto(into: Buffer, at: number, seq: number, length: number): void {
    const span = POOL_BYTES - length;
    const start = (Math.imul(seq, 2654435761) >>> 0) % Math.max(1, span) & ~7;
    this.pool.copy(into, at, start, start + length);
    const stamp = seq >>> 0;
    if ((into.byteOffset + at) % 4 === 0) {
      // Little-endian words in place (x86 and arm64 Linux are little-endian, as the records are).
      const words = new Uint32Array(into.buffer, into.byteOffset + at, length >>> 2);
      for (let w = 0; w + 2 <= words.length; w += 128) {
        words[w] = stamp;
        words[w + 1] = this.pairHash;
      }
      return;
    }
    for (let s = 0; s + 8 <= length; s += 512) {
      into.writeUInt32LE(stamp, at + s);
      into.writeUInt32LE(this.pairHash, at + s + 4);
    }
  }

  /** The data a write item carries: generated, or (delta resync) the image's own content at that moment. */
  dataFor(item: Extract<ModelItem, { kind: 'write' }>, image?: Buffer): Buffer {
    if (!item.fromImage) return this.payload(item.seq, item.length);
    if (!image) throw new Error('a write copied from the image needs the image');
    return Buffer.from(image.subarray(item.offset, item.offset + item.length));
  }

  /** The source disk after `seq`. */
  imageAt(seq: number): Buffer {
    const img = Buffer.alloc(this.diskBytes);
    for (const it of this.items) {
      if (it.seq > seq) break;
      // A write copied from the image does not change it.
      if (it.kind === 'write' && !it.fromImage) this.payloadInto(img, it.offset, it.seq, it.length);
    }
    return img;
  }

  /** The bytes [offset, offset + length) of the source disk after `seq`, in `into` when given (its first `length` bytes). */
  imageRange(seq: number, offset: number, length: number, into?: Buffer): Buffer {
    const out = into ? into.subarray(0, length).fill(0) : Buffer.alloc(length);
    const end = offset + length;
    for (const it of this.items) {
      if (it.seq > seq) break;
      if (it.kind !== 'write' || it.fromImage || it.offset >= end || it.offset + it.length <= offset) continue;
      if (it.offset >= offset && it.offset + it.length <= end) {
        this.payloadInto(out, it.offset - offset, it.seq, it.length);
        continue;
      }
      const from = Math.max(offset, it.offset);
      const to = Math.min(end, it.offset + it.length);
      this.payload(it.seq, it.length).copy(out, from - offset, from - it.offset, to - it.offset);
    }
    return out;
  }

  sha256At(seq: number): string {
    return createHash('sha256').update(this.imageAt(seq)).digest('hex');
  }

  /** Whether the state after `seq` is inside a resync window (not a recovery point). */
  inResync(seq: number): boolean {
    if (seq <= this.baseSeq) return true;
    // An adopted disk is not known until a resync has ended.
    let open = this.baseSeq > 0;
    for (const it of this.items) {
      if (it.seq > seq) break;
      if (it.kind === 'resync-start') open = true;
      else if (it.kind === 'resync-end') open = false;
    }
    return open;
  }

  /** The newest app tag outside a resync window, at or before `seq`. */
  latestApp(upTo = this.lastSeq): Extract<ModelItem, { kind: 'tag' }> | null {
    for (let s = upTo; s > this.baseSeq; s--) {
      const it = this.item(s);
      if (it.kind === 'tag' && it.tagKind === 'app' && !this.inResync(s)) return it;
    }
    return null;
  }
}
