// One apply step for one pair: items in seq order, already durable in the
// ingest log. Before-images are taken and made durable in the undo log
// before the target is written; the target is flushed before appliedSeq moves.
import type { StreamItem, WriteItem } from '../journal/items';
import { itemRecord } from '../journal/items';
import { RecordFlag, RecordKind } from '../journal/record';
import type { PendingRecord } from '../journal/segment-log';
import type { ItemPoint, UndoLog } from '../journal/undo-log';
import { Shadow, alignRanges, mergeRanges, type Extent } from './overlay';
import { alignedBuffer } from '../native';
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
  memory: AlignedMemory | null = null,
): Promise<ApplyPlan> {
  const writes = items.filter((i): i is WriteItem => i.kind === 'write');
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
  await runLimited(extents, 8, (e) => target.readFully(e.data, e.offset));
  if (inflight && inflight.length > 0) overlay(extents, inflight);
  const shadow = new Shadow(extents);

  // Items already in the undo log (captured before a crash) are replayed onto
  // the target without a second capture: the target may hold their data already.
  const captured = undo.maxSeq;
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
        const beforeImage = overlapping ? shadow.read(item.offset, item.data.length) : shadow.view(item.offset, item.data.length);
        const flags = item.resync ? RecordFlag.ResyncData : 0;
        if (isAllZero(beforeImage)) {
          // A region never written (a fresh disk's initial copy): its length is all the undo log needs.
          const count = beforeImage.length;
          undoRecords.push({ fields: { kind: RecordKind.UndoZero, flags, pairId, seq: item.seq, time: item.time, offset: item.offset, count } });
        } else {
          undoRecords.push({ fields: { kind: RecordKind.UndoWrite, flags, pairId, seq: item.seq, time: item.time, offset: item.offset }, payload: beforeImage });
          undoBytes += beforeImage.length;
        }
      }
      if (overlapping) shadow.write(item.offset, item.data);
    } else {
      if (item.seq > captured) undoRecords.push(itemRecord(pairId, item));
      markers.push(item);
    }
  }
  if (undoRecords.length > 0) await undo.append(undoRecords, undo.lastItem ?? before);
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
export async function finishApply(target: TargetDisk, plan: ApplyPlan): Promise<ApplyResult> {
  if (plan.extents.length > 0) {
    await target.writeExtents(plan.extents);
    await target.flush();
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
): Promise<ApplyResult> {
  return finishApply(target, await prepareApply(pairId, items, target, undo, before, null));
}
