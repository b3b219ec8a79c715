// Binary messages: one or more 40-byte-header write records back to back
// (docs/protocol.md). Records never span messages. Payloads are views into the
// message, never copies.
import { crc32c } from '../native';
import { WIRE_FLAG_RESYNC, WIRE_KIND_WRITE, WIRE_RECORD_HEADER_BYTES } from './constants';
import { ProtocolError } from './errors';

export interface WireRecord {
  kind: number;
  flags: number;
  stream: number;
  seq: number;
  offset: number;
  length: number;
  crc32c: number;
  time: number;
  payload: Buffer;
}

function readU64(buf: Buffer, pos: number): number {
  const lo = buf.readUInt32LE(pos);
  const hi = buf.readUInt32LE(pos + 4);
  // Above 2^53 a value cannot be a seq, an offset or a time we accept; keep it out of range, not rounded.
  if (hi >= 0x200000) return Number.MAX_SAFE_INTEGER + 1;
  return hi * 0x100000000 + lo;
}

function writeU64(buf: Buffer, pos: number, v: number): void {
  buf.writeUInt32LE(v % 0x100000000, pos);
  buf.writeUInt32LE(Math.floor(v / 0x100000000), pos + 4);
}

/**
 * Splits a binary message into records. Only structure is checked here
 * (truncation, kind, reserved bits, a length no payload could have): what
 * fails it is `malformed`. What an item must be for its pair (crc,
 * alignment, bounds, seq) is checked in one place, engine/item-check.ts.
 */
export function parseRecords(message: Buffer): WireRecord[] {
  const out: WireRecord[] = [];
  let pos = 0;
  if (message.length === 0) throw new ProtocolError('malformed', 'empty binary message');
  while (pos < message.length) {
    if (pos + WIRE_RECORD_HEADER_BYTES > message.length) {
      throw new ProtocolError('malformed', `truncated record header at byte ${pos} of a ${message.length}-byte message`);
    }
    const kind = message.readUInt8(pos);
    const flags = message.readUInt8(pos + 1);
    const reserved = message.readUInt16LE(pos + 2);
    const stream = message.readUInt32LE(pos + 4);
    if (kind !== WIRE_KIND_WRITE) throw new ProtocolError('malformed', `unknown record kind ${kind} at byte ${pos}`, { stream });
    if (reserved !== 0 || (flags & ~WIRE_FLAG_RESYNC) !== 0) {
      throw new ProtocolError('malformed', `reserved bits set in the record at byte ${pos}`, { stream });
    }
    const length = message.readUInt32LE(pos + 24);
    const seq = readU64(message, pos + 8);
    if (pos + WIRE_RECORD_HEADER_BYTES + length > message.length) {
      throw new ProtocolError('malformed', `truncated record: ${length}-byte payload at byte ${pos} runs past the ${message.length}-byte message`, { stream, seq });
    }
    const start = pos + WIRE_RECORD_HEADER_BYTES;
    out.push({
      kind,
      flags,
      stream,
      seq,
      offset: readU64(message, pos + 16),
      length,
      crc32c: message.readUInt32LE(pos + 28),
      time: readU64(message, pos + 32),
      payload: message.subarray(start, start + length),
    });
    pos = start + length;
  }
  return out;
}

export interface WriteRecordInput {
  stream: number;
  seq: number;
  offset: number;
  time: number;
  data: Uint8Array;
  resync?: boolean;
}

/** Encodes write records into one binary message (the simulator's side). */
export function encodeRecords(records: readonly WriteRecordInput[]): Buffer {
  let size = 0;
  for (const r of records) size += WIRE_RECORD_HEADER_BYTES + r.data.length;
  const buf = Buffer.allocUnsafe(size);
  let pos = 0;
  for (const r of records) {
    buf.writeUInt8(WIRE_KIND_WRITE, pos);
    buf.writeUInt8(r.resync ? WIRE_FLAG_RESYNC : 0, pos + 1);
    buf.writeUInt16LE(0, pos + 2);
    buf.writeUInt32LE(r.stream, pos + 4);
    writeU64(buf, pos + 8, r.seq);
    writeU64(buf, pos + 16, r.offset);
    buf.writeUInt32LE(r.data.length, pos + 24);
    buf.writeUInt32LE(crc32c(r.data), pos + 28);
    writeU64(buf, pos + 32, r.time);
    buf.set(r.data, pos + WIRE_RECORD_HEADER_BYTES);
    pos += WIRE_RECORD_HEADER_BYTES + r.data.length;
  }
  return buf;
}
