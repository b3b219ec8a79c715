// One apply step for one pair: items in seq order, already durable in the
// ingest log. Before-images are taken and made durable in the undo log
// before the target is written; the target is flushed before appliedSeq moves.
import type { StreamItem, WriteItem } from '../journal/items';
import { itemRecord } from '../journal/items';
import { RecordFlag, RecordKind } from '../journal/record';
import type { PendingRecord } from '../journal/segment-log';
import type { ItemPoint, UndoLog } from '../journal/undo-log';
import { Shadow, mergeRanges, type Extent } from './overlay';
import { runLimited, type TargetDisk } from './target';

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

export async function applyItems(
  pairId: string,
  items: readonly StreamItem[],
  target: TargetDisk,
  undo: UndoLog,
  before: ItemPoint,
): Promise<ApplyResult> {
  const writes = items.filter((i): i is WriteItem => i.kind === 'write');
  const ranges = mergeRanges(writes.map((w) => ({ offset: w.offset, length: w.data.length })));
  const extents: Extent[] = ranges.map((r) => ({ offset: r.offset, data: Buffer.alloc(0) }));
  await runLimited(extents.map((e, i) => [e, ranges[i]] as const), 8, async ([e, r]) => {
    if (r) e.data = await target.read(r.offset, r.length);
  });
  const shadow = new Shadow(extents);

  // Items already in the undo log (captured before a crash) are replayed onto
  // the target without a second capture: the target may hold their data already.
  const captured = undo.maxSeq;
  const undoRecords: PendingRecord[] = [];
  let undoBytes = 0;
  const markers: StreamItem[] = [];
  for (const item of items) {
    if (item.kind === 'write') {
      if (item.seq > captured) {
        const beforeImage = shadow.read(item.offset, item.data.length);
        undoRecords.push({
          fields: { kind: RecordKind.UndoWrite, flags: item.resync ? RecordFlag.ResyncData : 0, pairId, seq: item.seq, time: item.time, offset: item.offset },
          payload: beforeImage,
        });
        undoBytes += beforeImage.length;
      }
      shadow.write(item.offset, item.data);
    } else {
      if (item.seq > captured) undoRecords.push(itemRecord(pairId, item));
      markers.push(item);
    }
  }
  if (undoRecords.length > 0) {
    const prev = undo.lastItem ?? before;
    await undo.append(undoRecords, prev);
  }
  if (extents.length > 0) {
    await target.writeExtents(shadow.all());
    await target.flush();
  }
  const last = items[items.length - 1] as StreamItem;
  return {
    appliedSeq: last.seq,
    appliedTime: last.time,
    undoBytes,
    targetBytes: ranges.reduce((n, r) => n + r.length, 0),
    itemBytes: writes.reduce((n, w) => n + w.data.length, 0),
    markers,
  };
}
