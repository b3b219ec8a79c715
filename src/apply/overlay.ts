// In-memory range arithmetic for one apply or rollback step. Writes arrive
// sector-aligned but may overlap in any way; these helpers turn them into
// disjoint extents that can be written concurrently.

export interface Range {
  offset: number;
  length: number;
}

export interface Extent {
  offset: number;
  data: Buffer;
}

/** Sorts and merges overlapping or touching ranges. */
export function mergeRanges(ranges: readonly Range[]): Range[] {
  const sorted = ranges.filter((r) => r.length > 0).sort((a, b) => a.offset - b.offset);
  const out: Range[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.offset <= last.offset + last.length) {
      last.length = Math.max(last.length, r.offset + r.length - last.offset);
    } else {
      out.push({ offset: r.offset, length: r.length });
    }
  }
  return out;
}

/**
 * Widens sorted, disjoint ranges to whole blocks of `alignment` bytes (never
 * past `limit`, the disk's size) and merges the ones that then touch.
 */
export function alignRanges(ranges: readonly Range[], alignment: number, limit: number): Range[] {
  if (alignment <= 1) return ranges.slice();
  return mergeRanges(
    ranges.map((r) => {
      const start = Math.floor(r.offset / alignment) * alignment;
      const end = Math.min(limit, Math.ceil((r.offset + r.length) / alignment) * alignment);
      return { offset: start, length: end - start };
    }),
  );
}

/**
 * The content of a few disjoint disk ranges, read once from the target and
 * then updated write by write: the before-image of each write is what the
 * shadow holds just before it.
 */
export class Shadow {
  private readonly extents: Extent[];

  /** `extents` must be sorted and disjoint, and cover every range later read or written. */
  constructor(extents: Extent[]) {
    this.extents = extents;
  }

  read(offset: number, length: number): Buffer {
    const e = this.find(offset, length);
    const start = offset - e.offset;
    return Buffer.from(e.data.subarray(start, start + length));
  }

  /** The bytes in place, no copy: valid until a write changes them. */
  view(offset: number, length: number): Buffer {
    const e = this.find(offset, length);
    const start = offset - e.offset;
    return e.data.subarray(start, start + length);
  }

  write(offset: number, data: Uint8Array): void {
    const e = this.find(offset, data.length);
    e.data.set(data, offset - e.offset);
  }

  all(): readonly Extent[] {
    return this.extents;
  }

  private find(offset: number, length: number): Extent {
    let lo = 0;
    let hi = this.extents.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const e = this.extents[mid] as Extent;
      if (offset < e.offset) hi = mid - 1;
      else if (offset >= e.offset + e.data.length) lo = mid + 1;
      else {
        if (offset + length > e.offset + e.data.length) break;
        return e;
      }
    }
    throw new RangeError(`range ${offset}+${length} is not inside the shadow`);
  }
}

/**
 * Resolves pieces given in priority order (the first wins where they overlap)
 * into disjoint extents. Rolling back applies before-images this way: of all
 * writes after the point, the earliest one's before-image is the content at
 * the point.
 */
export class EarliestWins {
  // Covered intervals, sorted and disjoint: starts[i] .. ends[i].
  private starts: number[] = [];
  private ends: number[] = [];

  /** Returns the parts of the piece not covered by an earlier one, and covers them. */
  add(offset: number, data: Buffer): Extent[] {
    const end = offset + data.length;
    const out: Extent[] = [];
    let i = this.firstEndingAfter(offset);
    let cursor = offset;
    while (cursor < end && i < this.starts.length && (this.starts[i] as number) < end) {
      const s = this.starts[i] as number;
      if (s > cursor) out.push({ offset: cursor, data: data.subarray(cursor - offset, s - offset) });
      cursor = Math.max(cursor, this.ends[i] as number);
      i++;
    }
    if (cursor < end) out.push({ offset: cursor, data: data.subarray(cursor - offset) });
    this.cover(offset, end);
    return out;
  }

  private firstEndingAfter(offset: number): number {
    let lo = 0;
    let hi = this.ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.ends[mid] as number) <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private cover(start: number, end: number): void {
    // Merge with every interval that overlaps or touches [start, end).
    let i = this.firstEndingAfter(start - 1);
    if (i > 0 && (this.ends[i - 1] as number) >= start) i--;
    let j = i;
    let s = start;
    let e = end;
    while (j < this.starts.length && (this.starts[j] as number) <= e) {
      s = Math.min(s, this.starts[j] as number);
      e = Math.max(e, this.ends[j] as number);
      j++;
    }
    this.starts.splice(i, j - i, s);
    this.ends.splice(i, j - i, e);
  }
}
