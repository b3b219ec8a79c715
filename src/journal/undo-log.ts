// A pair's undo log: for every applied item, in seq order, the before-image
// of a write or a copy of a tag, tick or resync marker. With the target kept
// at the latest applied item, these records are what rebuilds the past.
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fsyncDir } from '../durable-files';
import { BACKGROUND_IO_PIECE_BYTES, type IoPriority } from '../native';
import { PAIR_ID } from '../protocol/constants';
import { JournalCorruptError } from './errors';
import { isItemRecord } from './items';
import { BATCH_ALIGNMENT, RECORD_HEADER_BYTES, RecordKind, decodeRecordHeader, isBeforeImage, recordSize, type DecodedRecord } from './record';
import { alignedBuffer, type BlockFile } from '../native';
import {
  SegmentLogWriter,
  listSegments,
  openForReading,
  readBatchAt,
  scanLog,
  segmentFileName,
  type LogBatch,
  type LogPosition,
  type PendingRecord,
  type ScanSummary,
  type StagingSource,
  type WrittenBatch,
} from './segment-log';

export interface UndoSegmentSummary {
  segment: number;
  /** The last item before this segment: the oldest point it can roll back to. */
  prevSeq: number;
  prevTime: number | null;
  firstSeq: number | null;
  lastSeq: number | null;
  firstTime: number | null;
  lastTime: number | null;
  bytes: number;
}

export interface ItemPoint {
  seq: number;
  time: number;
}

/** A before-image where it lies in the log, without its bytes. */
export interface BeforeImageRef {
  seq: number;
  /** The disk range it is the before-image of. */
  offset: number;
  length: number;
  /** Zeros (UndoZero), or bytes in `segment` from `fileOffset` on. */
  zero: boolean;
  segment: number;
  fileOffset: number;
}

export function undoDir(retentionDir: string, pairId: string): string {
  return join(retentionDir, 'pairs', pairId, 'undo');
}

/** Pairs whose undo log is on the volume (a purge removes it). */
export function pairsWithRetention(retentionDir: string): string[] {
  const root = join(retentionDir, 'pairs');
  if (!existsSync(root)) return [];
  return readdirSync(root).filter((id) => PAIR_ID.test(id) && existsSync(undoDir(retentionDir, id)));
}

function isUndoItem(r: DecodedRecord): boolean {
  return isBeforeImage(r.kind) || (isItemRecord(r) && r.kind !== RecordKind.Write);
}

export interface UndoLogOptions {
  /** Every intact record read at open: the caller rebuilds its catalog from them. */
  onRecord?: (record: DecodedRecord, batch: LogBatch) => void;
  /** Called before a new segment file is allocated: makes room or throws. */
  beforeAllocate?: (bytes: number) => Promise<void>;
  /** The segments the catalog indexes: closed ones are taken from it rather than read. */
  known?: readonly UndoSegmentSummary[];
  /** The engine's disk scheduler: the log's writes are background I/O that gives way to it. */
  priority?: IoPriority;
}

/** The seq a segment's SegmentStart names (the item before it), or null if it has none readable. */
async function segmentStartSeq(dir: string, segment: number): Promise<number | null> {
  let file;
  try {
    file = await openForReading(join(dir, segmentFileName(segment, 'undo')));
  } catch {
    return null;
  }
  try {
    const r = await readBatchAt(file, segment, 0, file.sizeAtOpen);
    const first = r.ok ? r.batch.records[0] : undefined;
    return first?.kind === RecordKind.SegmentStart ? first.seq : null;
  } finally {
    await file.close();
  }
}

export class UndoLog {
  readonly pairId: string;
  readonly dir: string;
  private readonly writer: SegmentLogWriter;
  private readonly summaries = new Map<number, UndoSegmentSummary>();
  private last: ItemPoint | null;

  private constructor(pairId: string, dir: string, writer: SegmentLogWriter, last: ItemPoint | null) {
    this.pairId = pairId;
    this.dir = dir;
    this.writer = writer;
    this.last = last;
  }

  private readonly appendListeners = new Set<(refs: readonly BeforeImageRef[]) => void>();

  /**
   * Calls `listener` with the before-images of every batch made durable from
   * now on, before append() returns: so before the applier writes the target
   * over them. Returns the unsubscribe.
   */
  onBeforeImages(listener: (refs: readonly BeforeImageRef[]) => void): () => void {
    this.appendListeners.add(listener);
    return () => this.appendListeners.delete(listener);
  }

  /** Opens the log, reading it through; a torn tail is dropped (and said in `repairs`). */
  static async open(retentionDir: string, pairId: string, segmentBytes: number, options: UndoLogOptions = {}): Promise<UndoLog> {
    const dir = undoDir(retentionDir, pairId);
    const read = await UndoLog.read(dir, options.onRecord, options.known ?? []);
    const writer = await SegmentLogWriter.open(
      {
        dir,
        extension: 'undo',
        segmentBytes,
        beforeAllocate: options.beforeAllocate,
        stagingBuffers: 1,
        maxIoBytes: BACKGROUND_IO_PIECE_BYTES,
        ...(options.priority ? { priority: options.priority } : {}),
      },
      read.scan,
    );
    const log = new UndoLog(pairId, dir, writer, read.last);
    for (const [n, s] of read.summaries) {
      s.bytes = statSync(join(dir, segmentFileName(n, 'undo'))).size;
      log.summaries.set(n, s);
    }
    if (read.scan.tornTail) log.repairs.push(`a torn batch at the end (segment ${read.scan.tornTail.segment} offset ${read.scan.tornTail.fileOffset}: ${read.scan.tornTail.reason}) was never acknowledged: dropped`);
    if (writer.sparedAtOpen.length > 0) log.repairs.push(`segments ${writer.sparedAtOpen.join(', ')} past the end held nothing whole: kept as spares`);
    if (read.readWhole) log.repairs.push('the catalog was behind the log: read the log whole');
    return log;
  }

  /** What opening the log put right after an unclean stop (a crash or a power cut), for the log. */
  readonly repairs: string[] = [];

  /**
   * Reads the log through, taking closed segments the catalog indexes from it
   * rather than from the disk: every segment but the last two on disk (the
   * one being written, and the one before in case it rolled after the last
   * checkpoint), and never the newest one the catalog has a row for. The
   * catalog's last commits may be lost to a power cut, and that row is then
   * the segment being written when it was made, behind the log. Should what
   * is taken from the catalog still not meet the segment read after it, the
   * whole log is read instead: the log is the truth, the catalog its index.
   */
  private static async read(
    dir: string,
    onRecord: ((record: DecodedRecord, batch: LogBatch) => void) | undefined,
    known: readonly UndoSegmentSummary[],
  ): Promise<{ scan: ScanSummary; summaries: Map<number, UndoSegmentSummary>; last: ItemPoint | null; readWhole: boolean }> {
    const newestRow = Math.max(0, ...known.map((k) => k.segment));
    const indexed = new Map(known.filter((k) => k.segment !== newestRow).map((k) => [k.segment, k]));
    const summaries = new Map<number, UndoSegmentSummary>();
    let last: ItemPoint | null = null;
    const onDisk = listSegments(dir, 'undo');
    let fromSegment = 0;
    for (const n of onDisk.slice(0, -2)) {
      const k = indexed.get(n);
      if (k === undefined || k.lastSeq === null || k.lastTime === null || (last !== null && k.prevSeq !== last.seq)) break;
      summaries.set(n, { ...k });
      last = { seq: k.lastSeq, time: k.lastTime };
      fromSegment = n + 1;
    }
    const readWhole = last !== null && (await segmentStartSeq(dir, fromSegment)) !== last.seq;
    if (readWhole) {
      summaries.clear();
      last = null;
      fromSegment = 0;
    }
    const scan = await scanLog(dir, 'undo', (batch) => {
      let s = summaries.get(batch.segment);
      for (const r of batch.records) {
        if (r.kind === RecordKind.SegmentStart) {
          s = { segment: batch.segment, prevSeq: r.seq, prevTime: r.seq > 0 ? r.time : null, firstSeq: null, lastSeq: null, firstTime: null, lastTime: null, bytes: 0 };
          summaries.set(batch.segment, s);
          continue;
        }
        if (!isUndoItem(r)) continue;
        if (s === undefined) throw new JournalCorruptError(join(dir, segmentFileName(batch.segment, 'undo')), batch.fileOffset, 'segment does not open with a SegmentStart record');
        if (last !== null && r.seq !== last.seq + 1) {
          throw new JournalCorruptError(join(dir, segmentFileName(batch.segment, 'undo')), batch.fileOffset, `undo record for seq ${r.seq} follows seq ${last.seq}`);
        }
        s.firstSeq ??= r.seq;
        s.firstTime ??= r.time;
        s.lastSeq = r.seq;
        s.lastTime = r.time;
        last = { seq: r.seq, time: r.time };
        onRecord?.(r, batch);
      }
    }, fromSegment);
    // The first record read must follow the last indexed one.
    const firstScanned = [...summaries.values()].find((x) => x.segment >= fromSegment && x.firstSeq !== null);
    const lastKnown = [...summaries.values()].filter((x) => x.segment < fromSegment).pop();
    if (firstScanned && lastKnown && firstScanned.prevSeq !== lastKnown.lastSeq) {
      throw new JournalCorruptError(join(dir, segmentFileName(firstScanned.segment, 'undo')), 0, `segment starts after seq ${firstScanned.prevSeq}, but the one before ended at seq ${lastKnown.lastSeq}`);
    }
    return { scan, summaries, last, readWhole };
  }

  /** The newest item with an undo record; null for an empty log. */
  get lastItem(): ItemPoint | null {
    return this.last;
  }

  /** Bytes this log has written since it was opened. */
  get bytesWritten(): number {
    return this.writer.bytesWritten;
  }

  get maxSeq(): number {
    return this.last?.seq ?? 0;
  }

  /** Oldest first. */
  segments(): UndoSegmentSummary[] {
    return [...this.summaries.values()].sort((a, b) => a.segment - b.segment);
  }

  /** Where the last durable batch ends: nothing at or past it is history yet. */
  get durableEnd(): LogPosition {
    return this.writer.end;
  }

  get activeSegment(): number | null {
    const segs = this.segments();
    return segs.length > 0 ? (segs[segs.length - 1] as UndoSegmentSummary).segment : null;
  }

  /**
   * Appends records for consecutive items and makes them durable. `before`
   * is the item just before the first of them: it opens a new segment.
   * `memory` (the applier's cycle) holds the encoded batch; without it the
   * log keeps a buffer of its own, as big as its biggest batch, for good.
   */
  async append(records: readonly PendingRecord[], before: ItemPoint, memory?: StagingSource): Promise<WrittenBatch> {
    const segmentStart = (): PendingRecord => ({
      fields: { kind: RecordKind.SegmentStart, flags: 0, pairId: this.pairId, seq: before.seq, time: before.time, offset: 0 },
    });
    const batch = await this.writer.append(records, segmentStart, memory);
    if (this.appendListeners.size > 0) {
      const refs: BeforeImageRef[] = [];
      let pos = batch.fileOffset + RECORD_HEADER_BYTES;
      for (const { fields: r, payload } of batch.records) {
        const payloadLength = payload?.length ?? 0;
        if (isBeforeImage(r.kind)) {
          const zero = r.kind === RecordKind.UndoZero;
          refs.push({ seq: r.seq, offset: r.offset, length: zero ? (r.count ?? 0) : payloadLength, zero, segment: batch.segment, fileOffset: pos + RECORD_HEADER_BYTES });
        }
        pos += recordSize(payloadLength);
      }
      for (const l of this.appendListeners) l(refs);
    }
    let s = this.summaries.get(batch.segment);
    for (const { fields: r } of batch.records) {
      if (r.kind === RecordKind.SegmentStart) {
        s = { segment: batch.segment, prevSeq: r.seq, prevTime: r.seq > 0 ? r.time : null, firstSeq: null, lastSeq: null, firstTime: null, lastTime: null, bytes: this.writer.segmentBytes };
        this.summaries.set(batch.segment, s);
        continue;
      }
      if (s === undefined) throw new Error('undo batch without a segment summary');
      s.firstSeq ??= r.seq;
      s.firstTime ??= r.time;
      s.lastSeq = r.seq;
      s.lastTime = r.time;
      this.last = { seq: r.seq, time: r.time };
    }
    return batch;
  }

  /**
   * Removes a whole segment: history before its last item is no longer
   * recoverable. With `recycle`, the file is kept as a spare (one at most)
   * and becomes a later segment of this log: writing into blocks written
   * before costs the filesystem less than into preallocated ones, whose
   * extents each write converts and each flush commits
   * (docs/decisions/0009-recycled-segments.md).
   */
  removeSegment(segment: number, recycle = false): void {
    if (segment === this.activeSegment) throw new Error(`segment ${segment} of ${this.pairId} is being written`);
    const path = join(this.dir, segmentFileName(segment, 'undo'));
    if (recycle && this.writer.spareCount === 0) this.writer.addSpare(path);
    else rmSync(path, { force: true });
    fsyncDir(this.dir);
    this.summaries.delete(segment);
  }

  /** Bytes of the recycled segments waiting to be reused: retention space, though no history. */
  get spareBytes(): number {
    return this.writer.spareBytes();
  }

  /** Deletes the recycled segments waiting to be reused; returns the bytes freed. */
  dropSpares(): number {
    return this.writer.dropSpares(0);
  }

  /**
   * Every batch of one segment, in order. A bad batch with an intact one
   * after it is damage to acknowledged history: JournalCorruptError, never
   * a silently shorter segment.
   *
   * The segment being written is read only up to what was durable when the
   * call began: past it a batch may be half-written while a later one has
   * landed (read at different moments), which is not damage.
   */
  async readSegment(segment: number): Promise<LogBatch[]> {
    const path = join(this.dir, segmentFileName(segment, 'undo'));
    const writtenTo = this.durableEnd;
    const durableEnd = segment === writtenTo.segment ? writtenTo.fileOffset : null;
    const file = await openForReading(path);
    const end = durableEnd === null ? file.sizeAtOpen : Math.min(durableEnd, file.sizeAtOpen);
    const out: LogBatch[] = [];
    try {
      let pos = 0;
      while (pos < end) {
        const r = await readBatchAt(file, segment, pos, end);
        if (r.ok) {
          out.push(r.batch);
          pos += r.batch.bytes;
          continue;
        }
        if (durableEnd !== null) throw new JournalCorruptError(path, r.at, `${r.reason}, before the durable end ${durableEnd}`);
        for (let p = Math.ceil((r.at + 1) / 4096) * 4096; p < end; p += 4096) {
          const later = await readBatchAt(file, segment, p, end);
          if (later.ok) throw new JournalCorruptError(path, r.at, `${r.reason}, yet later batches are intact`);
          if (later.headerValid) break;
        }
        break;
      }
    } finally {
      await file.close();
    }
    return out;
  }

  /**
   * Every before-image of an item after `afterSeq`, in seq order, read from
   * the record headers alone (a 4 KiB block holds the header; the payloads
   * are skipped). The log up to its durable end at the call.
   */
  async beforeImagesAfter(afterSeq: number, visit: (ref: BeforeImageRef) => void, signal?: AbortSignal): Promise<void> {
    const writtenTo = this.durableEnd;
    const segs = this.segments().filter((seg) => seg.lastSeq !== null && seg.lastSeq > afterSeq);
    // Header reads are small and one per record: several segments are walked at
    // once, and their references handed on in log order (the view keeps the earliest).
    const walk = async (seg: (typeof segs)[number]): Promise<BeforeImageRef[]> => {
      signal?.throwIfAborted();
      const refs: BeforeImageRef[] = [];
      const file = await openForReading(this.segmentPath(seg.segment));
      try {
        const end = seg.segment === writtenTo.segment ? Math.min(writtenTo.fileOffset, file.sizeAtOpen) : file.sizeAtOpen;
        await walkHeaders(file, seg.segment, end, (r, payloadFileOffset) => {
          if (r.seq <= afterSeq || !isBeforeImage(r.kind)) return;
          const zero = r.kind === RecordKind.UndoZero;
          refs.push({ seq: r.seq, offset: r.offset, length: zero ? r.count : r.payloadLength, zero, segment: seg.segment, fileOffset: payloadFileOffset });
        });
      } finally {
        await file.close();
      }
      return refs;
    };
    const inFlight: Array<Promise<BeforeImageRef[]>> = [];
    let next = 0;
    const launch = (): void => {
      while (inFlight.length < HEADER_WALKS_AT_ONCE && next < segs.length) {
        const p = walk(segs[next++] as (typeof segs)[number]);
        p.catch(() => undefined);
        inFlight.push(p);
      }
    };
    launch();
    while (inFlight.length > 0) {
      const refs = await (inFlight.shift() as Promise<BeforeImageRef[]>);
      launch();
      for (const r of refs) visit(r);
    }
  }

  segmentPath(segment: number): string {
    return join(this.dir, segmentFileName(segment, 'undo'));
  }

  async close(): Promise<void> {
    await this.writer.close();
  }

  /** Removes the whole log (commit after failover, purge). */
  async destroy(): Promise<void> {
    await this.writer.close();
    for (const n of listSegments(this.dir, 'undo')) rmSync(join(this.dir, segmentFileName(n, 'undo')), { force: true });
    rmSync(this.dir, { recursive: true, force: true });
    this.summaries.clear();
  }
}

/**
 * Calls `visit` with every record header of a segment up to `end`, batch by
 * batch, reading the 4 KiB blocks that hold headers and none that hold only
 * payload. A batch whose header does not decode ends the walk: the log was
 * checked when the agent opened it, and what follows is past its end.
 */
/** Segments whose headers are read at once while a view's index is built. */
const HEADER_WALKS_AT_ONCE = 8;

async function walkHeaders(file: BlockFile, segment: number, end: number, visit: (r: NonNullable<ReturnType<typeof decodeRecordHeader>>, payloadFileOffset: number) => void): Promise<void> {
  const block = alignedBuffer(2 * BATCH_ALIGNMENT, false);
  let blockAt = -1;
  /** The header at `pos`, from the two blocks read around it. */
  const headerAt = async (pos: number): Promise<Buffer> => {
    const start = Math.floor(pos / BATCH_ALIGNMENT) * BATCH_ALIGNMENT;
    if (blockAt !== start || pos + RECORD_HEADER_BYTES > start + block.length) {
      const got = await file.read(block, start);
      if (got < block.length) block.fill(0, got);
      blockAt = start;
    }
    return block.subarray(pos - start, pos - start + RECORD_HEADER_BYTES);
  };
  let pos = 0;
  while (pos + RECORD_HEADER_BYTES <= end) {
    const head = decodeRecordHeader(await headerAt(pos), 0, segment);
    if (head === null || head.kind !== RecordKind.Batch || head.offset < BATCH_ALIGNMENT || pos + head.offset > end) return;
    let at = pos + RECORD_HEADER_BYTES;
    for (let i = 0; i < head.count; i++) {
      const r = decodeRecordHeader(await headerAt(at), 0, segment);
      if (r === null) return;
      visit(r, at + RECORD_HEADER_BYTES);
      at += r.size;
    }
    pos += head.offset;
  }
}
