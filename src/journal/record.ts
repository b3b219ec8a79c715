// The on-disk record shared by the ingest log and the undo logs; see
// docs/journal-format.md. A record is a 128-byte header and a payload,
// padded so the next record starts on an 8-byte boundary.
import { crc32c } from '../native';
import { crc32cCombine } from './crc32c-combine';

export const RECORD_HEADER_BYTES = 128;
export const RECORD_MAGIC = 0x314a544d; // the bytes "MTJ1"
export const FORMAT_VERSION = 1;
export const MAX_PAIR_ID_BYTES = 64;
/** Records inside a batch start on 8-byte boundaries. */
export const RECORD_ALIGNMENT = 8;
/** Batches start on 4096-byte boundaries so they can be written with O_DIRECT. */
export const BATCH_ALIGNMENT = 4096;

export const RecordKind = {
  Write: 1,
  Tag: 2,
  Tick: 3,
  ResyncStart: 4,
  ResyncEnd: 5,
  /** Opens every batch: seq = batch number, offset = batch bytes, count = records that follow. */
  Batch: 16,
  /** Undo log: the before-image of the write with this seq. */
  UndoWrite: 17,
  /** Undo log: first record of a segment; seq/time = the last item before it. */
  SegmentStart: 18,
  /**
   * Undo log: the before-image of the write with this seq is `count` zero
   * bytes, and the record has no payload. A kind of its own, not a flag, so
   * that a reader that does not know it refuses it rather than reading an
   * empty before-image. `count` 0 (BEFORE_IMAGE_NOT_KEPT): the write's
   * before-image was not kept, as the write is in a resync window with no
   * recovery point before it; nothing is ever rolled back through it.
   */
  UndoZero: 19,
} as const;

/** The `count` of an UndoZero record whose write kept no before-image (every real write has a length). */
export const BEFORE_IMAGE_NOT_KEPT = 0;
export type RecordKind = (typeof RecordKind)[keyof typeof RecordKind];

/** An undo log's before-image of a write, as bytes or as a length of zeros. */
export function isBeforeImage(kind: RecordKind): boolean {
  return kind === RecordKind.UndoWrite || kind === RecordKind.UndoZero;
}

const KNOWN_KINDS = new Set<number>(Object.values(RecordKind));

export const RecordFlag = { ResyncData: 1 } as const;

// Header layout (little-endian).
const O_CRC = 0;
const O_MAGIC = 4;
const O_SEGMENT = 8;
const O_KIND = 12;
const O_FLAGS = 13;
const O_PAIR_LEN = 14;
const O_VERSION = 15;
const O_SEQ = 16;
const O_TIME = 24;
const O_OFFSET = 32;
const O_PAYLOAD_LEN = 40;
const O_COUNT = 44;
const O_PAIR = 48;

export interface RecordFields {
  kind: RecordKind;
  flags: number;
  pairId: string;
  seq: number;
  time: number;
  /** A write's disk offset; a batch's length in bytes. */
  offset: number;
  /** A batch's record count; an UndoZero's image length; 0 otherwise. */
  count: number;
}

export interface DecodedRecord extends RecordFields {
  segment: number;
  payloadLength: number;
  /** Where the payload starts in the buffer it was decoded from. */
  payloadStart: number;
  /** Bytes the record occupies, padding included. */
  size: number;
}

export type DecodeFailure = 'short' | 'magic' | 'segment' | 'version' | 'kind' | 'length' | 'crc';

export type DecodeResult = { ok: true; record: DecodedRecord } | { ok: false; reason: DecodeFailure };

/** LevelDB's mask: a CRC stored inside data that is itself CRC'd must not validate by accident. */
export function maskCrc(crc: number): number {
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

export function recordSize(payloadLength: number): number {
  const raw = RECORD_HEADER_BYTES + payloadLength;
  return Math.ceil(raw / RECORD_ALIGNMENT) * RECORD_ALIGNMENT;
}

function writeU64(buf: Buffer, pos: number, value: number): void {
  buf.writeUInt32LE(value % 0x100000000, pos);
  buf.writeUInt32LE(Math.floor(value / 0x100000000), pos + 4);
}

function readU64(buf: Buffer, pos: number): number {
  return buf.readUInt32LE(pos) + buf.readUInt32LE(pos + 4) * 0x100000000;
}

/**
 * Encodes one record at `pos` in `buf` (which must have room) and returns the
 * position after it. The payload is copied in; the CRC covers the header
 * after the CRC field, and the payload. With `payloadCrc`, the payload's CRC
 * as it arrived and was checked, the record's CRC is made from it rather
 * than from the copy: a copy that went wrong then fails when read.
 */
export function encodeRecord(
  buf: Buffer,
  pos: number,
  segment: number,
  fields: Omit<RecordFields, 'count'> & { count?: number },
  payload?: Uint8Array,
  payloadCrc?: number,
): number {
  const payloadLength = payload?.length ?? 0;
  const size = recordSize(payloadLength);
  // Zero the header and the tail padding only: the payload is copied over the rest.
  buf.fill(0, pos, pos + RECORD_HEADER_BYTES);
  buf.fill(0, pos + RECORD_HEADER_BYTES + payloadLength, pos + size);
  const pairBytes = Buffer.byteLength(fields.pairId, 'utf8');
  if (pairBytes > MAX_PAIR_ID_BYTES) throw new RangeError(`pair id longer than ${MAX_PAIR_ID_BYTES} bytes: ${fields.pairId}`);
  buf.writeUInt32LE(RECORD_MAGIC, pos + O_MAGIC);
  buf.writeUInt32LE(segment >>> 0, pos + O_SEGMENT);
  buf.writeUInt8(fields.kind, pos + O_KIND);
  buf.writeUInt8(fields.flags, pos + O_FLAGS);
  buf.writeUInt8(pairBytes, pos + O_PAIR_LEN);
  buf.writeUInt8(FORMAT_VERSION, pos + O_VERSION);
  writeU64(buf, pos + O_SEQ, fields.seq);
  writeU64(buf, pos + O_TIME, fields.time);
  writeU64(buf, pos + O_OFFSET, fields.offset);
  buf.writeUInt32LE(payloadLength, pos + O_PAYLOAD_LEN);
  buf.writeUInt32LE((fields.count ?? 0) >>> 0, pos + O_COUNT);
  buf.write(fields.pairId, pos + O_PAIR, 'utf8');
  if (payload && payloadLength > 0) buf.set(payload, pos + RECORD_HEADER_BYTES);
  const crc =
    payloadCrc !== undefined
      ? crc32cCombine(crc32c(buf.subarray(pos + O_MAGIC, pos + RECORD_HEADER_BYTES)), payloadCrc, payloadLength)
      : crc32c(buf.subarray(pos + O_MAGIC, pos + RECORD_HEADER_BYTES + payloadLength));
  buf.writeUInt32LE(maskCrc(crc), pos + O_CRC);
  return pos + size;
}

/**
 * Decodes the record at `pos`. `segment` is the number of the file it was
 * read from: a record from an earlier life of a recycled file fails here.
 */
export function decodeRecord(buf: Buffer, pos: number, segment: number): DecodeResult {
  if (pos + RECORD_HEADER_BYTES > buf.length) return { ok: false, reason: 'short' };
  if (buf.readUInt32LE(pos + O_MAGIC) !== RECORD_MAGIC) return { ok: false, reason: 'magic' };
  if (buf.readUInt32LE(pos + O_SEGMENT) !== segment >>> 0) return { ok: false, reason: 'segment' };
  if (buf.readUInt8(pos + O_VERSION) !== FORMAT_VERSION) return { ok: false, reason: 'version' };
  const kind = buf.readUInt8(pos + O_KIND);
  if (!KNOWN_KINDS.has(kind)) return { ok: false, reason: 'kind' };
  const pairLen = buf.readUInt8(pos + O_PAIR_LEN);
  if (pairLen > MAX_PAIR_ID_BYTES) return { ok: false, reason: 'length' };
  const payloadLength = buf.readUInt32LE(pos + O_PAYLOAD_LEN);
  if (pos + RECORD_HEADER_BYTES + payloadLength > buf.length) return { ok: false, reason: 'short' };
  const crc = crc32c(buf.subarray(pos + O_MAGIC, pos + RECORD_HEADER_BYTES + payloadLength));
  if (maskCrc(crc) !== buf.readUInt32LE(pos + O_CRC)) return { ok: false, reason: 'crc' };
  return { ok: true, record: { ...headerFields(buf, pos, kind as RecordKind, segment, payloadLength), pairId: buf.toString('utf8', pos + O_PAIR, pos + O_PAIR + pairLen) } };
}

function headerFields(buf: Buffer, pos: number, kind: RecordKind, segment: number, payloadLength: number): Omit<DecodedRecord, 'pairId'> {
  return {
    kind,
    flags: buf.readUInt8(pos + O_FLAGS),
    seq: readU64(buf, pos + O_SEQ),
    time: readU64(buf, pos + O_TIME),
    offset: readU64(buf, pos + O_OFFSET),
    count: buf.readUInt32LE(pos + O_COUNT),
    segment,
    payloadLength,
    payloadStart: pos + RECORD_HEADER_BYTES,
    size: recordSize(payloadLength),
  };
}

/**
 * A record's header alone, its payload neither read nor checked (the view of
 * a test failover indexes before-images without reading them; the log was
 * checked whole when the agent opened it). Null when it is no record.
 */
export function decodeRecordHeader(buf: Buffer, pos: number, segment: number): Omit<DecodedRecord, 'pairId'> | null {
  if (pos + RECORD_HEADER_BYTES > buf.length) return null;
  if (buf.readUInt32LE(pos + O_MAGIC) !== RECORD_MAGIC || buf.readUInt32LE(pos + O_SEGMENT) !== segment >>> 0) return null;
  if (buf.readUInt8(pos + O_VERSION) !== FORMAT_VERSION) return null;
  const kind = buf.readUInt8(pos + O_KIND);
  if (!KNOWN_KINDS.has(kind)) return null;
  return headerFields(buf, pos, kind as RecordKind, segment, buf.readUInt32LE(pos + O_PAYLOAD_LEN));
}
