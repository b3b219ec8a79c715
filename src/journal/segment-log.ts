// A log of batches in numbered, preallocated segment files. Each batch is one
// O_DIRECT pwritev followed by fdatasync, so a batch is the unit of
// durability: the reader accepts whole batches and stops at the first one
// that is torn. See docs/journal-format.md.
import { readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fsyncDir, mkdirDurable } from '../durable-files';
import { BlockFile, alignedBuffer, type IoPriority, type OpenBlockFileOptions } from '../native';
import { JournalCorruptError } from './errors';
import {
  BATCH_ALIGNMENT,
  RECORD_HEADER_BYTES,
  RecordKind,
  decodeRecord,
  encodeRecord,
  recordSize,
  type DecodedRecord,
  type RecordFields,
} from './record';

export interface PendingRecord {
  /** `count` is left out (0) but for an undo log's UndoZero records. */
  fields: Omit<RecordFields, 'count'> & { count?: number };
  /**
   * With a staging source, encoding points the payload at its copy in the
   * staged batch: the buffer it came in is then held by nothing here, and
   * can be collected young.
   */
  payload?: Uint8Array;
  /** CRC-32C of `payload` when already known (checked on arrival). */
  payloadCrc?: number;
}

export interface LogBatch {
  segment: number;
  /** Where the batch starts in its segment file. */
  fileOffset: number;
  batchNo: number;
  bytes: number;
  /** The batch's bytes; records' payloadStart positions index into it. */
  buffer: Buffer;
  records: DecodedRecord[];
}

/** A batch encoded and placed, not yet written. */
export interface EncodedBatch<R extends PendingRecord = PendingRecord> {
  segment: number;
  fileOffset: number;
  batchNo: number;
  bytes: number;
  buffer: Buffer;
  /** The records given, in order, after the segment header when the batch opens a segment. */
  records: readonly (R | PendingRecord)[];
}

/** A batch as written: its place and the records it holds, payloads as given. */
export interface WrittenBatch<R extends PendingRecord = PendingRecord> {
  segment: number;
  fileOffset: number;
  batchNo: number;
  bytes: number;
  records: readonly (R | PendingRecord)[];
  /**
   * The batch as written (records at their offsets), when the writer has a
   * staging source: the writer never touches it again, and the receiver gives
   * it back to where it came from. Null when the writer reuses its buffers.
   */
  staging: Buffer | null;
}

/** Where a writer takes the memory to encode each batch in, instead of reusing two buffers of its own. */
export interface StagingSource {
  take(bytes: number): Buffer;
}

export interface LogPosition {
  segment: number;
  fileOffset: number;
}

export interface ScanSummary {
  /** Where the next batch goes. */
  end: LogPosition;
  nextBatchNo: number;
  batches: number;
  /** Set when the log ended in a batch that was never completed (normal after a crash). */
  tornTail: { segment: number; fileOffset: number; reason: string } | null;
}

export function comparePositions(a: LogPosition, b: LogPosition): number {
  return a.segment !== b.segment ? a.segment - b.segment : a.fileOffset - b.fileOffset;
}

export function alignBatch(n: number): number {
  return Math.ceil(n / BATCH_ALIGNMENT) * BATCH_ALIGNMENT;
}

export function batchBytesFor(records: readonly PendingRecord[]): number {
  let size = RECORD_HEADER_BYTES;
  for (const r of records) size += recordSize(r.payload?.length ?? 0);
  return alignBatch(size);
}

const SEGMENT_NAME = /^(\d{8,})\.(log|undo)$/;

/** A file's size, or 0 if it is gone. */
function sizeOrZero(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

export function segmentFileName(segment: number, extension: string): string {
  return `${String(segment).padStart(8, '0')}.${extension}`;
}

/** Numbered segment files of one log, oldest first. */
export function listSegments(dir: string, extension: string): number[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: number[] = [];
  for (const name of names) {
    const m = SEGMENT_NAME.exec(name);
    if (m && m[2] === extension) out.push(Number(m[1]));
  }
  return out.sort((a, b) => a - b);
}

/**
 * Opens a log file for reading with O_DIRECT, like its writer. Buffered reads
 * of a file written with O_DIRECT can be served stale pages from the page
 * cache (a region read as zeros before a direct write landed in it): a hole
 * where durable data is, seen by a rebuild or by the applier reading a
 * recycled segment. Reading direct sees what is on the disk.
 */
export function openForReading(path: string, maxIoBytes = 0, priority?: IoPriority): Promise<BlockFile> {
  return BlockFile.open(path, { readOnly: true, direct: true, maxIoBytes, ...(priority ? { priority } : {}) });
}

/** Memory for reading batches: a 4 KiB header buffer to reuse, and where the batch's own memory comes from. */
export interface BatchReadMemory {
  head: Buffer;
  take(bytes: number): Buffer;
}

/**
 * Reads the batch at `fileOffset`, or says why there is none there. The
 * batch's buffer is `bytes` long, or a view of that length into memory from
 * `memory.take`.
 */
export async function readBatchAt(
  file: BlockFile,
  segment: number,
  fileOffset: number,
  fileBytes: number,
  memory?: BatchReadMemory,
): Promise<{ ok: true; batch: LogBatch } | { ok: false; headerValid: boolean; at: number; reason: string; batchNo?: number }> {
  if (fileOffset + RECORD_HEADER_BYTES > fileBytes) return { ok: false, headerValid: false, at: fileOffset, reason: 'end of file' };
  // Aligned reads: logs are read with O_DIRECT, as they are written (see openForReading).
  const head = memory?.head ?? alignedBuffer(BATCH_ALIGNMENT);
  await file.read(head, fileOffset);
  const h = decodeRecord(head, 0, segment);
  if (!h.ok) return { ok: false, headerValid: false, at: fileOffset, reason: `no batch header (${h.reason})` };
  if (h.record.kind !== RecordKind.Batch) return { ok: false, headerValid: false, at: fileOffset, reason: 'record outside a batch' };
  const bytes = h.record.offset;
  const batchNo = h.record.seq;
  if (bytes < BATCH_ALIGNMENT || bytes % BATCH_ALIGNMENT !== 0) {
    return { ok: false, headerValid: true, at: fileOffset, reason: `bad batch length ${bytes}`, batchNo };
  }
  if (fileOffset + bytes > fileBytes) {
    return { ok: false, headerValid: true, at: fileOffset, reason: 'batch runs past the end of the file', batchNo };
  }
  const buffer = memory ? memory.take(bytes).subarray(0, bytes) : alignedBuffer(bytes, false);
  const got = await file.read(buffer, fileOffset);
  if (got < bytes) return { ok: false, headerValid: true, at: fileOffset, reason: 'short read', batchNo };
  const records: DecodedRecord[] = [];
  let pos = RECORD_HEADER_BYTES;
  for (let i = 0; i < h.record.count; i++) {
    const r = decodeRecord(buffer, pos, segment);
    if (!r.ok) {
      return { ok: false, headerValid: true, at: fileOffset + pos, reason: `record ${i} of batch ${batchNo}: ${r.reason}`, batchNo };
    }
    if (r.record.kind === RecordKind.Batch) {
      return { ok: false, headerValid: true, at: fileOffset + pos, reason: `batch header inside batch ${batchNo}`, batchNo };
    }
    records.push(r.record);
    pos += r.record.size;
    if (pos > bytes) return { ok: false, headerValid: true, at: fileOffset + pos, reason: 'records overrun the batch', batchNo };
  }
  return { ok: true, batch: { segment, fileOffset, batchNo, bytes, buffer, records } };
}

/** Looks for any intact batch numbered `minBatchNo` or later at or after `from`. */
async function findLaterBatch(
  dir: string,
  extension: string,
  segments: readonly number[],
  fromIndex: number,
  fromOffset: number,
  minBatchNo: number,
): Promise<(LogPosition & { batchNo: number; bytes: number }) | null> {
  const chunkBytes = 4 * 1024 * 1024;
  for (let i = fromIndex; i < segments.length; i++) {
    const segment = segments[i] as number;
    const path = join(dir, segmentFileName(segment, extension));
    const file = await openForReading(path);
    try {
      const size = file.sizeAtOpen;
      let pos = i === fromIndex ? alignBatch(fromOffset) : 0;
      const chunk = alignedBuffer(chunkBytes);
      while (pos < size) {
        const got = await file.read(chunk, pos);
        for (let p = 0; p + RECORD_HEADER_BYTES <= got; p += BATCH_ALIGNMENT) {
          const r = decodeRecord(chunk.subarray(0, got), p, segment);
          if (r.ok && r.record.kind === RecordKind.Batch && r.record.seq >= minBatchNo) {
            return { segment, fileOffset: pos + p, batchNo: r.record.seq, bytes: r.record.offset };
          }
        }
        pos += chunkBytes;
      }
    } finally {
      await file.close();
    }
  }
  return null;
}

/**
 * Reads every intact batch in order and finds where the log ends. A bad batch
 * with nothing intact after it is a torn tail: it was never acknowledged, and
 * the writer continues there. A bad batch with intact later batches is
 * corruption of acknowledged data: JournalCorruptError, never skipped.
 */
export async function scanLog(
  dir: string,
  extension: string,
  onBatch: (batch: LogBatch) => void | Promise<void>,
  fromSegment = 0,
  durableEnd: LogPosition | null = null,
): Promise<ScanSummary> {
  // Segments before `fromSegment` are known already (closed, indexed): not read again.
  // With `durableEnd` (a writer is appending: verify), nothing at or past it is
  // read, and everything before it must be intact.
  const segments = listSegments(dir, extension).filter((n) => n >= fromSegment && (durableEnd === null || n <= durableEnd.segment));
  let expected: number | null = null;
  let batches = 0;
  let end: LogPosition = { segment: segments[0] ?? 1, fileOffset: 0 };
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i] as number;
    const path = join(dir, segmentFileName(segment, extension));
    const file = await openForReading(path);
    let stop = null as { headerValid: boolean; at: number; reason: string; batchNo?: number } | null;
    let pos = 0;
    const bound = durableEnd !== null && segment === durableEnd.segment ? durableEnd.fileOffset : null;
    try {
      const size = bound === null ? file.sizeAtOpen : Math.min(bound, file.sizeAtOpen);
      for (;;) {
        if (bound !== null && pos >= bound) break;
        const r = await readBatchAt(file, segment, pos, size);
        if (!r.ok) {
          stop = r;
          break;
        }
        if (expected !== null && r.batch.batchNo !== expected) {
          if (r.batch.batchNo > expected) {
            throw new JournalCorruptError(path, pos, `batch ${r.batch.batchNo} follows batch ${expected - 1}: batches are missing`);
          }
          stop = { headerValid: false, at: pos, reason: `stale batch ${r.batch.batchNo}` };
          break;
        }
        await onBatch(r.batch);
        batches++;
        expected = r.batch.batchNo + 1;
        pos += r.batch.bytes;
        end = { segment, fileOffset: pos };
      }
    } finally {
      await file.close();
    }
    if (bound !== null) {
      if (stop !== null) throw new JournalCorruptError(path, stop.at, `${stop.reason}, before the durable end ${bound}`);
      return { end: { segment, fileOffset: pos }, nextBatchNo: expected ?? 1, batches, tornTail: null };
    }
    if (stop === null) throw new Error('unreachable: scan loop ended without a stop');
    const nextMin = expected ?? 0;
    const later = await findLaterBatch(dir, extension, segments, i, stop.headerValid ? stop.at + 1 : pos + 1, nextMin);
    if (later === null) {
      // The end of the log: after the last intact batch, wherever the stop was.
      // A torn first batch of a fresh segment leaves the end in the segment
      // before, so the writer rolls again only for a batch that does not fit
      // there, as it always does (and as the check below expects).
      const tornTail = stop.headerValid ? { segment, fileOffset: pos, reason: stop.reason } : null;
      return { end, nextBatchNo: nextMin || 1, batches, tornTail };
    }
    // The data goes on in a later segment. That is a normal roll only if it is
    // the very next batch, at the start of the next segment, and it would not
    // have fitted in this one (the writer rolls only then). A batch left torn
    // here by a power cut (its header intact, numbered like the one that
    // follows) was never acknowledged: the writer wrote it again where it fitted.
    const segmentSize = statSync(path).size;
    const normalRoll =
      expected !== null &&
      later.batchNo === expected &&
      later.fileOffset === 0 &&
      later.segment === segments[i + 1] &&
      pos + later.bytes > segmentSize &&
      (!stop.headerValid || stop.batchNo === expected);
    if (!normalRoll) {
      throw new JournalCorruptError(path, stop.headerValid ? stop.at : pos, `${stop.reason}, yet later batches are intact`);
    }
  }
  return { end, nextBatchNo: expected ?? 1, batches, tornTail: null };
}

export interface SegmentLogOptions {
  dir: string;
  extension: 'log' | 'undo';
  /** Size of every segment file, a multiple of 4096. */
  segmentBytes: number;
  /**
   * Called before a new segment file is allocated (not when a spare is
   * reused): makes room or throws. Its error fails the append.
   */
  beforeAllocate?: (bytes: number) => Promise<void>;
  /** Staging buffers: 2 lets the next batch be encoded while one is written (ingest); 1 saves memory (undo). */
  stagingBuffers?: 1 | 2;
  /** Memory for each batch, handed over with the written batch (the ingest log's, to the applier). */
  stagingSource?: StagingSource;
  /** Writes reach the disk in pieces of at most this size (the undo logs: BACKGROUND_IO_PIECE_BYTES). */
  maxIoBytes?: number;
  /** The engine's disk scheduler: this log's writes are its foreground I/O, or background I/O that gives way to it. */
  priority?: IoPriority;
  /** Acknowledgements wait for this log's writes and flushes (the ingest log): they are foreground I/O of `priority`. */
  foreground?: boolean;
}

/**
 * The writing end of a log. One batch at a time: the caller awaits each
 * append before the next (the ingest log's group commit does this).
 */
export class SegmentLogWriter {
  readonly dir: string;
  readonly extension: 'log' | 'undo';
  readonly segmentBytes: number;
  /** The segment file open for writing: the durable end's, or the next one once a batch is placed there. */
  private file: BlockFile | null = null;
  private fileSegment = 0;
  /** Where the last durable batch ends. */
  private segment: number;
  private position: number;
  private nextBatchNo: number;
  private spares: string[] = [];
  private buffers: Array<Buffer | null> = [null, null];
  private staging = 0;
  private busy = false;
  // Where the next encoded batch goes; ahead of segment/position while a batch is in flight.
  private reservedSegment: number;
  private reservedPosition: number;
  private reservedBatchNo: number;
  private readonly beforeAllocate: ((bytes: number) => Promise<void>) | undefined;
  /** Bytes written to the volume by this writer (batches, padding included). */
  bytesWritten = 0;
  /** Segments past the end of the log that the open found (made or torn just before a crash) and kept as spares. */
  readonly sparedAtOpen: number[] = [];

  private readonly stagingCount: number;
  private readonly stagingSource: StagingSource | undefined;
  private readonly maxIoBytes: number;
  private readonly foreground: boolean;
  private readonly priority: IoPriority | undefined;

  private constructor(options: SegmentLogOptions, end: LogPosition, nextBatchNo: number) {
    this.foreground = options.foreground ?? false;
    this.priority = options.priority;
    this.beforeAllocate = options.beforeAllocate;
    this.stagingCount = options.stagingBuffers ?? 2;
    this.stagingSource = options.stagingSource;
    this.maxIoBytes = options.maxIoBytes ?? 0;
    this.dir = options.dir;
    this.extension = options.extension;
    this.segmentBytes = options.segmentBytes;
    this.segment = end.segment;
    this.position = end.fileOffset;
    this.nextBatchNo = nextBatchNo;
    this.reservedSegment = end.segment;
    this.reservedPosition = end.fileOffset;
    this.reservedBatchNo = nextBatchNo;
  }

  /** Opens the writer where a scan found the end of the log. */
  static async open(options: SegmentLogOptions, scan: ScanSummary): Promise<SegmentLogWriter> {
    if (options.segmentBytes % BATCH_ALIGNMENT !== 0) throw new RangeError('segmentBytes must be a multiple of 4096');
    mkdirDurable(options.dir);
    const w = new SegmentLogWriter(options, scan.end, scan.nextBatchNo);
    // Spares left by the last run first: the ones made next must not be listed twice.
    for (const name of readdirSync(options.dir)) if (name.startsWith('spare-')) w.spares.push(join(options.dir, name));
    // Segments after the end hold nothing valid (made just before a crash, or
    // holding only a torn batch): keep them as spares.
    for (const n of listSegments(options.dir, options.extension)) {
      if (n > scan.end.segment) {
        w.addSpare(join(options.dir, segmentFileName(n, options.extension)));
        w.sparedAtOpen.push(n);
      }
    }
    if (w.sparedAtOpen.length > 0) fsyncDir(options.dir);
    return w;
  }

  get currentSegment(): number {
    return this.segment;
  }

  /** Where the last durable batch ends: the next one is written there. */
  get end(): LogPosition {
    return { segment: this.segment, fileOffset: this.position };
  }

  /** The batch number the next append gets. */
  get batchNo(): number {
    return this.nextBatchNo;
  }

  /** Largest batch that fits in one segment. */
  get maxBatchBytes(): number {
    return this.segmentBytes;
  }

  /**
   * Writes records as one batch and makes it durable. `segmentHeader` is put
   * first when the batch opens a new segment (the undo log's SegmentStart).
   */
  /** `memory`: where this one batch is encoded (the caller's, held until the append settles) instead of the writer's own buffer. */
  async append<R extends PendingRecord>(records: readonly R[], segmentHeader?: () => PendingRecord, memory?: StagingSource): Promise<WrittenBatch<R>> {
    return this.commit(this.encode(records, segmentHeader, memory));
  }

  /**
   * Encodes the next batch into a staging buffer and reserves its place,
   * without I/O, so it can be prepared while the previous batch is flushed.
   * Batches must be committed in the order they were encoded.
   */
  encode<R extends PendingRecord>(records: readonly R[], segmentHeader?: () => PendingRecord, memory?: StagingSource): EncodedBatch<R> {
    let all: readonly (R | PendingRecord)[] = records;
    let bytes = batchBytesFor(all);
    const rolls = this.reservedPosition === 0 || this.reservedPosition + bytes > this.segmentBytes;
    if (rolls && segmentHeader) {
      all = [segmentHeader(), ...records];
      bytes = batchBytesFor(all);
    }
    if (bytes > this.segmentBytes) throw new RangeError(`batch of ${bytes} bytes exceeds the segment size ${this.segmentBytes}`);
    const segment = rolls && this.reservedPosition > 0 ? this.reservedSegment + 1 : this.reservedSegment;
    const fileOffset = rolls ? 0 : this.reservedPosition;
    const staged = this.stagingSource?.take(bytes) ?? null;
    const buf = staged ?? memory?.take(bytes).subarray(0, bytes) ?? this.stagingBuffer(bytes);
    let pos = RECORD_HEADER_BYTES;
    for (const r of all) {
      const payloadAt = pos + RECORD_HEADER_BYTES;
      pos = encodeRecord(buf, pos, segment, r.fields, r.payload, r.payloadCrc);
      if (staged !== null && r.payload !== undefined) r.payload = staged.subarray(payloadAt, payloadAt + r.payload.length);
    }
    buf.fill(0, pos, bytes);
    const batchNo = this.reservedBatchNo;
    encodeRecord(buf, 0, segment, { kind: RecordKind.Batch, flags: 0, pairId: '', seq: batchNo, time: 0, offset: bytes, count: all.length });
    this.reservedSegment = segment;
    this.reservedPosition = fileOffset + bytes;
    this.reservedBatchNo++;
    return { segment, fileOffset, batchNo, bytes, buffer: buf, records: all };
  }

  /** Writes an encoded batch where it was reserved and makes it durable. */
  async commit<R extends PendingRecord>(enc: EncodedBatch<R>): Promise<WrittenBatch<R>> {
    if (this.busy) throw new Error('SegmentLogWriter.commit is not re-entrant');
    this.busy = true;
    try {
      if (enc.segment !== this.fileSegment || this.file === null) await this.openSegment(enc.segment, enc.fileOffset);
      const file = this.file as BlockFile;
      const writeAndFlush = async (): Promise<void> => {
        await file.writeDurable(enc.buffer.subarray(0, enc.bytes), enc.fileOffset);
      };
      await (this.foreground && this.priority ? this.priority.foreground(writeAndFlush) : writeAndFlush());
      this.segment = enc.segment;
      this.position = enc.fileOffset + enc.bytes;
      this.bytesWritten += enc.bytes;
      this.nextBatchNo = enc.batchNo + 1;
      return { segment: enc.segment, fileOffset: enc.fileOffset, batchNo: enc.batchNo, bytes: enc.bytes, records: enc.records, staging: this.stagingSource ? enc.buffer : null };
    } catch (err) {
      // Nothing after a failed batch may be written where it was reserved:
      // start again after the last durable batch. A batch that failed in a
      // new segment leaves the end in the one before, so the next batch goes
      // there if it fits, as a reader expects of a roll.
      this.reservedSegment = this.segment;
      this.reservedPosition = this.position;
      this.reservedBatchNo = this.nextBatchNo;
      throw err;
    } finally {
      this.busy = false;
    }
  }

  /** Recycled segments waiting to be reused. */
  get spareCount(): number {
    return this.spares.length;
  }

  /** Bytes the spares occupy. */
  spareBytes(): number {
    return this.spares.reduce((total, path) => total + sizeOrZero(path), 0);
  }

  /** Deletes spares beyond `keep`; returns the bytes freed. */
  dropSpares(keep: number): number {
    let freed = 0;
    while (this.spares.length > keep) {
      const path = this.spares.pop() as string;
      const bytes = sizeOrZero(path);
      try {
        rmSync(path, { force: true });
        freed += bytes;
      } catch {
        // Left where it is: not counted as freed.
      }
    }
    if (freed > 0) fsyncDir(this.dir);
    return freed;
  }

  /** A released segment is renamed to a spare and reused for a later segment, already allocated. */
  addSpare(path: string): void {
    const spare = join(this.dir, `spare-${Date.now()}-${this.spares.length}-${Math.random().toString(36).slice(2, 8)}.${this.extension}`);
    renameSync(path, spare);
    this.spares.push(spare);
  }

  async close(): Promise<void> {
    const f = this.file;
    this.file = null;
    if (f) await f.close();
  }

  /** Two staging buffers, used in turn: one being written while the next is encoded. */
  private stagingBuffer(bytes: number): Buffer {
    this.staging = this.stagingCount === 2 ? 1 - this.staging : 0;
    const current = this.buffers[this.staging];
    if (current === undefined || current === null || current.length < bytes) {
      const b = alignedBuffer(Math.max(bytes, 1024 * 1024));
      this.buffers[this.staging] = b;
      return b;
    }
    return current;
  }

  /** Opens segment `segment` for writing at `fileOffset`: the current one, or a new or recycled file. */
  private async openSegment(segment: number, fileOffset: number): Promise<void> {
    if (this.file !== null) {
      await this.file.close();
      this.file = null;
    }
    const path = this.segmentPath(segment);
    if (fileOffset > 0 || (segment === this.segment && this.position > 0)) {
      this.file = await BlockFile.open(path, this.fileOptions({ direct: true }));
      this.fileSegment = segment;
      return;
    }
    if (this.spares.length === 0) await this.beforeAllocate?.(this.segmentBytes);
    const spare = this.spares.shift();
    if (spare !== undefined) renameSync(spare, path);
    const f = await BlockFile.open(path, this.fileOptions({ create: true, direct: true }));
    try {
      if (spare === undefined || statSync(path).size < this.segmentBytes) await f.allocate(0, this.segmentBytes);
    } catch (err) {
      await f.close();
      rmSync(path, { force: true });
      throw err;
    }
    fsyncDir(this.dir);
    this.file = f;
    this.fileSegment = segment;
  }

  /** Background writes give way to the scheduler's foreground I/O; the ingest log's own are that foreground I/O. */
  private fileOptions(base: OpenBlockFileOptions): OpenBlockFileOptions {
    return { ...base, maxIoBytes: this.maxIoBytes, ...(this.priority && !this.foreground ? { priority: this.priority } : {}) };
  }

  private segmentPath(segment: number): string {
    return join(this.dir, segmentFileName(segment, this.extension));
  }
}
