// A pair's disk at a point, read in place while replication goes on: for
// each range, the before-image of the earliest item after the point that
// wrote there (from the undo log), else the target as it is now. The index
// of those before-images is built from the undo records' headers alone and
// kept up to date as the applier adds more: the undo log tells it of every
// batch once durable, before the target is written over. So a read that
// looks at the index, reads the target, and looks again never returns a
// byte newer than the point: a range the applier wrote meanwhile has its
// before-image in the index by then, and is read from it instead.
import { BlockFile, alignedBuffer } from '../native';
import type { BeforeImageRef, UndoLog } from '../journal/undo-log';
import type { TargetDisk } from '../apply/target';
import { ExtentIndex, type IndexedExtent } from './extent-index';

export interface PointViewSource {
  pairId: string;
  diskBytes: number;
  target: TargetDisk;
  undo: UndoLog;
}

const TARGET_READ_ALIGNMENT = 4096;

export class PointView {
  private readonly index = new ExtentIndex();
  private readonly files = new Map<number, Promise<BlockFile>>();
  private unsubscribe: (() => void) | null = null;
  private closed = false;
  /** How the index was built: records and the time it took (ms). */
  readonly built = { beforeImages: 0, ms: 0 };

  private constructor(
    private readonly source: PointViewSource,
    readonly seq: number,
  ) {}

  /** The view at the state after `seq`, which the target must hold already (or hold items past). */
  static async open(source: PointViewSource, seq: number, signal?: AbortSignal): Promise<PointView> {
    const view = new PointView(source, seq);
    const t = performance.now();
    // Batches made durable while the log is read are held, then taken in seq order after it.
    const live: BeforeImageRef[] = [];
    let building = true;
    let scannedTo = seq;
    view.unsubscribe = source.undo.onBeforeImages((refs) => {
      if (building) live.push(...refs);
      else for (const r of refs) view.add(r);
    });
    try {
      await source.undo.beforeImagesAfter(
        seq,
        (r) => {
          view.add(r);
          scannedTo = Math.max(scannedTo, r.seq);
        },
        signal,
      );
      for (const r of live) if (r.seq > scannedTo) view.add(r);
      building = false;
    } catch (err) {
      await view.close();
      throw err;
    }
    view.built.ms = performance.now() - t;
    return view;
  }

  get sizeBytes(): number {
    return this.source.diskBytes;
  }

  /** Extents in the index (memory: about 70 bytes each). */
  get indexedExtents(): number {
    return this.index.size;
  }

  private add(r: BeforeImageRef): void {
    if (r.seq <= this.seq || r.length === 0) return;
    this.built.beforeImages++;
    this.index.fillGaps(r.offset, r.length, r);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const end = offset + length;
    const out = Buffer.alloc(length);
    const covered = this.index.overlapping(offset, end);
    // Whatever no before-image covers is as the target holds it now.
    let cursor = offset;
    const gaps: Array<[number, number]> = [];
    for (const e of covered) {
      if (e.offset > cursor) gaps.push([cursor, Math.min(e.offset, end)]);
      cursor = Math.max(cursor, e.offset + e.length);
    }
    if (cursor < end) gaps.push([cursor, end]);
    const version = this.index.version;
    await Promise.all(gaps.map(([from, to]) => this.readTarget(out, offset, from, to)));
    // Looked at again: a range written over while it was read has its before-image by now.
    const final = this.index.version === version ? covered : this.index.overlapping(offset, end);
    await Promise.all(final.map((e) => this.readBeforeImage(out, offset, end, e)));
    return out;
  }

  private async readTarget(out: Buffer, base: number, from: number, to: number): Promise<void> {
    const start = Math.floor(from / TARGET_READ_ALIGNMENT) * TARGET_READ_ALIGNMENT;
    const stop = Math.min(this.source.diskBytes, Math.ceil(to / TARGET_READ_ALIGNMENT) * TARGET_READ_ALIGNMENT);
    const buf = alignedBuffer(stop - start, false);
    await this.source.target.readFully(buf, start);
    buf.copy(out, from - base, from - start, to - start);
  }

  private async readBeforeImage(out: Buffer, base: number, end: number, e: IndexedExtent): Promise<void> {
    const from = Math.max(base, e.offset);
    const to = Math.min(end, e.offset + e.length);
    if (to <= from) return;
    const dest = out.subarray(from - base, to - base);
    if (e.zero) {
      dest.fill(0);
      return;
    }
    const file = await this.file(e.segment);
    const got = await file.read(dest, e.fileOffset + (from - e.offset));
    if (got < dest.length) throw new Error(`undo segment ${e.segment} of ${this.source.pairId} ends inside a before-image`);
  }

  /** An undo segment, opened once (buffered: before-images start on any 8-byte boundary). */
  private file(segment: number): Promise<BlockFile> {
    let f = this.files.get(segment);
    if (f === undefined) {
      f = BlockFile.open(this.source.undo.segmentPath(segment), { readOnly: true });
      this.files.set(segment, f);
    }
    return f;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe?.();
    const files = [...this.files.values()];
    this.files.clear();
    await Promise.all(files.map(async (f) => (await f.catch(() => null))?.close()));
  }
}
