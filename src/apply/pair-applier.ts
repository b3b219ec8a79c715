// One apply step for one pair: items in seq order, already durable in the
// ingest log. Before-images are taken and made durable in the undo log
// before the target is written; the target is flushed before appliedSeq moves.
import type { StreamItem, WriteItem } from '../journal/items';
import { itemRecord } from '../journal/items';
import { BEFORE_IMAGE_NOT_KEPT, RecordFlag, RecordKind } from '../journal/record';
import type { PendingRecord } from '../journal/segment-log';
import type { ItemPoint, UndoLog } from '../journal/undo-log';
import { Shadow, alignRanges, mergeRanges, type Extent, type Range } from './overlay';
import { alignedBuffer } from '../native';
import { ApplyTimings } from './apply-timings';
import type { AlignedMemory } from './slab-pool';
import { runLimited, type TargetDisk } from './target';
import { isAllZero } from './zeros';

export interface ApplyResult {
  appliedSeq: number;
  appliedTime: number;
  /** Bytes of before-images written to the undo log. */
  undoBytes: number;
  /** Bytes written to the target. */
  targetBytes: number;
  /** Payload bytes of the writes applied (what the lag is counted in). */
  itemBytes: number;
  /** The items in this step that the catalog indexes. */
  markers: StreamItem[];
}

/** Stage A's output: what stage B writes to the target, and the result once it has. */
export interface ApplyPlan {
  extents: readonly Extent[];
  result: ApplyResult;
}

/** Where the time of callers that do not count it goes. */
const UNCOUNTED = new ApplyTimings();

/** Copies into each read extent the parts that `newer` (sorted, disjoint) covers. */
function overlay(extents: readonly Extent[], newer: readonly Extent[]): void {
  let j = 0;
  for (const e of extents) {
    const eEnd = e.offset + e.data.length;
    while (j < newer.length && (newer[j] as Extent).offset + (newer[j] as Extent).data.length <= e.offset) j++;
    for (let k = j; k < newer.length; k++) {
      const n = newer[k] as Extent;
      if (n.offset >= eEnd) break;
      const from = Math.max(e.offset, n.offset);
      const to = Math.min(eEnd, n.offset + n.data.length);
      n.data.copy(e.data, from - e.offset, from - n.offset, to - n.offset);
    }
  }
}

/**
 * A pair's resync windows as the applier meets them. Inside a window with no
 * recovery point before it (a new pair's initial copy, the first resync after
 * a commit), no state before the window's end can ever be rebuilt: its writes
 * need no before-images, and reading and keeping them would only slow the
 * copy. Where the pair has a point before the window, every write keeps its
 * before-image as anywhere else.
 */
export interface ResyncCapture {
  /** A resync window is open (a resync-start applied, its resync-end not yet). */
  inWindow: boolean;
  /** The open window's writes get no before-images. */
  uncaptured: boolean;
  /** Whether the state after some item before `seq` can be rebuilt. */
  pointBefore(seq: number): boolean;
}

/** Capture on, outside any window: what a pair without resync windows has. */
export function keepingEveryBeforeImage(): ResyncCapture {
  return { inWindow: false, uncaptured: false, pointBefore: () => true };
}

/** The window state through a step's items: which writes fall in a window without before-images, and the state after the last item. */
function followWindows(items: readonly StreamItem[], resync: ResyncCapture): { uncaptured: Set<number>; inWindow: boolean; uncapturedAtEnd: boolean } {
  let inWindow = resync.inWindow;
  let uncaptured = resync.uncaptured;
  const seqs = new Set<number>();
  for (const item of items) {
    if (item.kind === 'resync-start') {
      // A resync begun again before the last one ended keeps the first one's start.
      if (!inWindow) uncaptured = !resync.pointBefore(item.seq);
      inWindow = true;
    } else if (item.kind === 'resync-end') {
      inWindow = false;
      uncaptured = false;
    } else if (item.kind === 'write' && uncaptured) seqs.add(item.seq);
  }
  return { uncaptured: seqs, inWindow, uncapturedAtEnd: uncaptured };
}

/**
 * The parts of the step's blocks to read from the target: every block a
 * write that keeps a before-image touches, whole; elsewhere only what the
 * writes leave of a block, widened to the target's alignment (the block is
 * written back whole). `ranges` and `capturing` are sorted and disjoint.
 */
function readsNeeded(blocks: readonly Extent[], ranges: readonly Range[], capturing: readonly Range[], alignment: number): Extent[] {
  const out: Extent[] = [];
  const align = Math.max(1, alignment);
  let c = 0;
  let w = 0;
  for (const b of blocks) {
    const end = b.offset + b.data.length;
    while (w < ranges.length && (ranges[w] as Range).offset < b.offset) w++;
    while (c < capturing.length && (capturing[c] as Range).offset + (capturing[c] as Range).length <= b.offset) c++;
    if (c < capturing.length && (capturing[c] as Range).offset < end) {
      out.push(b);
      continue;
    }
    // The parts of the block no write covers, each widened to whole aligned pieces.
    const gaps: Range[] = [];
    const widened = (from: number, to: number): Range => {
      const start = Math.floor(from / align) * align;
      return { offset: start, length: Math.min(end, Math.ceil(to / align) * align) - start };
    };
    let from = b.offset;
    while (w < ranges.length && (ranges[w] as Range).offset < end) {
      const r = ranges[w] as Range;
      if (r.offset > from) gaps.push(widened(from, r.offset));
      from = Math.max(from, r.offset + r.length);
      w++;
    }
    if (end > from) gaps.push(widened(from, end));
    for (const g of mergeRanges(gaps)) out.push({ offset: g.offset, data: b.data.subarray(g.offset - b.offset, g.offset - b.offset + g.length) });
  }
  return out;
}

/**
 * Stage A: reads the before-images (as the target will be once `inflight`,
 * the previous step's extents, has landed) and makes them durable in the
 * undo log. The target is not touched.
 */
export async function prepareApply(
  pairId: string,
  items: readonly StreamItem[],
  target: TargetDisk,
  undo: UndoLog,
  before: ItemPoint,
  inflight: readonly Extent[] | null,
  resync: ResyncCapture,
  memory: AlignedMemory | null = null,
  timings: ApplyTimings = UNCOUNTED,
): Promise<ApplyPlan> {
  const writes = items.filter((i): i is WriteItem => i.kind === 'write');
  // Items already in the undo log (captured before a crash) are replayed onto
  // the target without a second capture: the target may hold their data already.
  const captured = undo.maxSeq;
  const windows = followWindows(items, resync);
  const needsBeforeImage = (w: WriteItem): boolean => w.seq > captured && !windows.uncaptured.has(w.seq);
  const ranges = mergeRanges(writes.map((w) => ({ offset: w.offset, length: w.data.length })));
  // Read and written back whole O_DIRECT blocks: a little more than the writes cover.
  const blocks = alignRanges(ranges, target.ioAlignment, target.sizeBytes);
  // Each block a view of one aligned slab (from the cycle's memory when the
  // caller has it): where the target takes O_DIRECT, every block starts on a
  // 4096 boundary in it. A step of ticks and tags alone needs no memory.
  const total = blocks.reduce((n, r) => n + r.length, 0);
  const slab = total === 0 ? Buffer.alloc(0) : memory !== null ? memory.take(total) : alignedBuffer(total, false);
  let at = 0;
  const extents: Extent[] = blocks.map((r) => {
    const e = { offset: r.offset, data: slab.subarray(at, at + r.length) };
    at += r.length;
    return e;
  });
  const reads = readsNeeded(extents, ranges, mergeRanges(writes.filter(needsBeforeImage).map((w) => ({ offset: w.offset, length: w.data.length }))), target.ioAlignment);
  await timings.time('read', () => runLimited(reads, 8, (e) => target.readFully(e.data, e.offset)));
  timings.beforeImageBytesRead += reads.reduce((n, r) => n + r.data.length, 0);
  if (inflight && inflight.length > 0) overlay(extents, inflight);
  const shadow = new Shadow(extents);

  const undoRecords: PendingRecord[] = [];
  let undoBytes = 0;
  const markers: StreamItem[] = [];
  // When no two writes of the step overlap, a before-image is a view of what
  // was read, valid until the writes are laid on after the undo batch is
  // flushed; otherwise each is copied before the next write changes it.
  const overlapping = ranges.reduce((n, r) => n + r.length, 0) !== writes.reduce((n, w) => n + w.data.length, 0);
  for (const item of items) {
    if (item.kind === 'write') {
      if (item.seq > captured) {
        const flags = item.resync ? RecordFlag.ResyncData : 0;
        if (!needsBeforeImage(item)) {
          // Nothing can ever be rolled back to from here: the record only keeps the seq chain whole.
          undoRecords.push({ fields: { kind: RecordKind.UndoZero, flags, pairId, seq: item.seq, time: item.time, offset: item.offset, count: BEFORE_IMAGE_NOT_KEPT } });
          timings.uncapturedBytes += item.data.length;
        } else {
          const beforeImage = overlapping ? shadow.read(item.offset, item.data.length) : shadow.view(item.offset, item.data.length);
          if (isAllZero(beforeImage)) {
            // A region never written (a fresh disk): its length is all the undo log needs.
            const count = beforeImage.length;
            undoRecords.push({ fields: { kind: RecordKind.UndoZero, flags, pairId, seq: item.seq, time: item.time, offset: item.offset, count } });
          } else {
            undoRecords.push({ fields: { kind: RecordKind.UndoWrite, flags, pairId, seq: item.seq, time: item.time, offset: item.offset }, payload: beforeImage });
            undoBytes += beforeImage.length;
          }
        }
      }
      if (overlapping) shadow.write(item.offset, item.data);
    } else {
      if (item.seq > captured) undoRecords.push(itemRecord(pairId, item));
      markers.push(item);
    }
  }
  if (undoRecords.length > 0) await timings.time('undo', () => undo.append(undoRecords, undo.lastItem ?? before, memory ?? undefined));
  resync.inWindow = windows.inWindow;
  resync.uncaptured = windows.uncapturedAtEnd;
  if (!overlapping) for (const w of writes) shadow.write(w.offset, w.data);
  const last = items[items.length - 1] as StreamItem;
  return {
    extents: shadow.all(),
    result: {
      appliedSeq: last.seq,
      appliedTime: last.time,
      undoBytes,
      targetBytes: blocks.reduce((n, r) => n + r.length, 0),
      itemBytes: writes.reduce((n, w) => n + w.data.length, 0),
      markers,
    },
  };
}

/** Stage B: writes the step's extents to the target and flushes it. */
export async function finishApply(target: TargetDisk, plan: ApplyPlan, timings: ApplyTimings = UNCOUNTED): Promise<ApplyResult> {
  if (plan.extents.length > 0) {
    await timings.time('write', () => target.writeExtents(plan.extents));
    await timings.time('flush', () => target.flush());
  }
  return plan.result;
}

/** Both stages, one after the other. */
export async function applyItems(
  pairId: string,
  items: readonly StreamItem[],
  target: TargetDisk,
  undo: UndoLog,
  before: ItemPoint,
  resync: ResyncCapture,
  timings: ApplyTimings = UNCOUNTED,
): Promise<ApplyResult> {
  return finishApply(target, await prepareApply(pairId, items, target, undo, before, null, resync, null, timings), timings);
}
