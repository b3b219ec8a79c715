// Laying before-images back: the state after `toSeq` is the state after
// `fromSeq` with, for every range, the before-image of the earliest write
// after `toSeq` that touched it.
import { EarliestWins, type Extent } from '../apply/overlay';
import { zeroImage } from '../apply/zeros';
import { JournalCorruptError } from '../journal/errors';
import { BEFORE_IMAGE_NOT_KEPT, RecordKind, isBeforeImage } from '../journal/record';
import { MtagentError } from '../errors';
import type { UndoLog } from '../journal/undo-log';

export interface ExtentSink {
  writeExtents(extents: readonly Extent[]): Promise<void>;
}

export interface RollbackStats {
  records: number;
  bytes: number;
}

/**
 * Writes onto `sink` (holding the state after `fromSeq`) what turns it into
 * the state after `toSeq`. Segments go newest first and each one's pieces
 * are resolved earliest-wins in memory, so the older segment, written later,
 * wins across segments too; memory stays within one segment.
 */
export async function rollBack(undo: UndoLog, sink: ExtentSink, toSeq: number, fromSeq: number, signal?: AbortSignal): Promise<RollbackStats> {
  const stats: RollbackStats = { records: 0, bytes: 0 };
  if (toSeq >= fromSeq) return stats;
  const segments = undo
    .segments()
    .filter((s) => s.lastSeq !== null && s.firstSeq !== null && s.lastSeq > toSeq && s.firstSeq <= fromSeq)
    .reverse();
  for (const seg of segments) {
    signal?.throwIfAborted();
    const batches = await undo.readSegment(seg.segment);
    const resolver = new EarliestWins();
    const pieces: Extent[] = [];
    // Every item between the two points has its record here; fewer means damage, not a shorter history.
    const want = Math.min(fromSeq, seg.lastSeq as number) - Math.max(toSeq, seg.prevSeq);
    let seen = 0;
    for (const batch of batches) {
      for (const r of batch.records) {
        if (r.kind === RecordKind.SegmentStart || r.seq <= toSeq || r.seq > fromSeq) continue;
        seen++;
        if (!isBeforeImage(r.kind)) continue;
        if (r.kind === RecordKind.UndoZero && r.count === BEFORE_IMAGE_NOT_KEPT) {
          // Points refuses every state this would reach: reaching it is a bug, never a wrong image.
          throw new MtagentError('point-refused', `seq ${r.seq} of ${undo.pairId} kept no before-image (resync data with no recovery point before it): no state at or before seq ${toSeq} can be rebuilt`);
        }
        const data = r.kind === RecordKind.UndoZero ? zeroImage(r.count) : batch.buffer.subarray(r.payloadStart, r.payloadStart + r.payloadLength);
        for (const p of resolver.add(r.offset, data)) pieces.push(p);
        stats.records++;
        stats.bytes += data.length;
      }
    }
    if (seen < want) {
      throw new JournalCorruptError(undo.segmentPath(seg.segment), 0, `holds ${seen} of the ${want} undo records between seq ${Math.max(toSeq, seg.prevSeq)} and ${Math.min(fromSeq, seg.lastSeq as number)}`);
    }
    await sink.writeExtents(pieces);
  }
  return stats;
}

