// Disjoint extents of a disk, each with where its content is, in sorted
// chunks: a lookup is two binary searches, an insertion moves one chunk at
// most. An extent is as long as the before-image it comes from, so the
// count is that of writes after the point (not of 4 KiB blocks), and about
// 70 bytes each in memory.

export interface IndexedExtent {
  offset: number;
  length: number;
  /** Zeros, or bytes in `segment` from `fileOffset` on. */
  zero: boolean;
  segment: number;
  fileOffset: number;
}

const CHUNK = 1024;

export class ExtentIndex {
  private chunks: IndexedExtent[][] = [];
  private count = 0;
  /** Bumped by every insertion: a reader that saw one value knows whether anything came since. */
  version = 0;

  get size(): number {
    return this.count;
  }

  /**
   * Covers the parts of [offset, offset+length) nothing covers yet: an
   * earlier before-image wins over a later one (they come in seq order).
   */
  fillGaps(offset: number, length: number, source: { zero: boolean; segment: number; fileOffset: number }): void {
    const end = offset + length;
    let cursor = offset;
    const gaps: Array<[number, number]> = [];
    for (const e of this.overlapping(offset, end)) {
      if (e.offset > cursor) gaps.push([cursor, e.offset]);
      cursor = Math.max(cursor, e.offset + e.length);
    }
    if (cursor < end) gaps.push([cursor, end]);
    for (const [from, to] of gaps) {
      this.insert({ offset: from, length: to - from, zero: source.zero, segment: source.segment, fileOffset: source.zero ? 0 : source.fileOffset + (from - offset) });
    }
  }

  /** The extents that overlap [offset, end), in order. */
  overlapping(offset: number, end: number): IndexedExtent[] {
    const out: IndexedExtent[] = [];
    // The extent holding `offset`, if any, is the last one starting at or before it: in the first chunk searched.
    const first = Math.max(0, this.chunkFor(offset));
    for (let c = first; c < this.chunks.length; c++) {
      const chunk = this.chunks[c] as IndexedExtent[];
      if ((chunk[0] as IndexedExtent).offset >= end) break;
      let i = c === first ? Math.max(0, lastStartingAtOrBefore(chunk, offset)) : 0;
      for (; i < chunk.length; i++) {
        const e = chunk[i] as IndexedExtent;
        if (e.offset >= end) return out;
        if (e.offset + e.length > offset) out.push(e);
      }
    }
    return out;
  }

  private insert(e: IndexedExtent): void {
    this.version++;
    this.count++;
    if (this.chunks.length === 0) {
      this.chunks.push([e]);
      return;
    }
    const c = Math.max(0, this.chunkFor(e.offset));
    const chunk = this.chunks[c] as IndexedExtent[];
    chunk.splice(lastStartingAtOrBefore(chunk, e.offset) + 1, 0, e);
    if (chunk.length > 2 * CHUNK) this.chunks.splice(c, 1, chunk.slice(0, CHUNK), chunk.slice(CHUNK));
  }

  /** The chunk whose first extent starts at or before `offset` (-1: before every chunk). */
  private chunkFor(offset: number): number {
    let lo = 0;
    let hi = this.chunks.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const first = (this.chunks[mid] as IndexedExtent[])[0] as IndexedExtent;
      if (first.offset <= offset) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }
}

function lastStartingAtOrBefore(chunk: readonly IndexedExtent[], offset: number): number {
  let lo = 0;
  let hi = chunk.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if ((chunk[mid] as IndexedExtent).offset <= offset) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found;
}
