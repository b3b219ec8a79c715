import { describe, expect, it } from 'vitest';
import { crc32c } from '../../../src/native';
import { RECORD_HEADER_BYTES, RecordKind, decodeRecord, encodeRecord, maskCrc, recordSize } from '../../../src/journal/record';

const fields = { kind: RecordKind.Write, flags: 1, pairId: 'vm1-disk0', seq: 2 ** 40 + 7, time: 1764182400000000, offset: 10 * 2 ** 30, count: 0 };

function encoded(payload = Buffer.from('hello, disk'), segment = 3): Buffer {
  const buf = Buffer.alloc(recordSize(payload.length) + 16);
  encodeRecord(buf, 0, segment, fields, payload);
  return buf;
}

describe('journal record', () => {
  it('round-trips every field, 64-bit values included', () => {
    const r = decodeRecord(encoded(), 0, 3);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.record).toMatchObject({ ...fields, segment: 3, payloadLength: 11, payloadStart: RECORD_HEADER_BYTES, size: 144 });
  });

  it('pads records to 8 bytes', () => {
    expect(recordSize(0)).toBe(128);
    expect(recordSize(1)).toBe(136);
    expect(recordSize(4096)).toBe(128 + 4096);
  });

  it('ChecksumMismatch: a flipped payload bit fails the crc', () => {
    const buf = encoded();
    buf[RECORD_HEADER_BYTES + 4] = (buf[RECORD_HEADER_BYTES + 4] as number) ^ 0x10;
    expect(decodeRecord(buf, 0, 3)).toEqual({ ok: false, reason: 'crc' });
  });

  it('with the payload CRC given, writes the same record as computing it', () => {
    const payload = Buffer.from('hello, disk, as it arrived');
    const given = Buffer.alloc(recordSize(payload.length));
    encodeRecord(given, 0, 3, fields, payload, crc32c(payload));
    const computed = Buffer.alloc(recordSize(payload.length));
    encodeRecord(computed, 0, 3, fields, payload);
    expect(given.equals(computed)).toBe(true);
  });

  it('with a payload CRC that does not match what was copied in, the record fails when read', () => {
    const payload = Buffer.from('hello, disk');
    const buf = Buffer.alloc(recordSize(payload.length));
    encodeRecord(buf, 0, 3, fields, payload, crc32c(Buffer.from('hello, dusk')));
    expect(decodeRecord(buf, 0, 3)).toEqual({ ok: false, reason: 'crc' });
  });

  it('a flipped header bit fails the crc', () => {
    const buf = encoded();
    buf[20] = (buf[20] as number) ^ 1; // inside seq
    expect(decodeRecord(buf, 0, 3)).toEqual({ ok: false, reason: 'crc' });
  });

  it('StaleSegment: a record from an earlier life of a recycled file does not parse', () => {
    expect(decodeRecord(encoded(undefined, 3), 0, 4)).toEqual({ ok: false, reason: 'segment' });
  });

  it('zeros are not a record', () => {
    expect(decodeRecord(Buffer.alloc(4096), 0, 1)).toEqual({ ok: false, reason: 'magic' });
  });

  it('BadLengthAtEnd: a payload running past the buffer is short, not read', () => {
    const buf = encoded(Buffer.alloc(1000, 7));
    expect(decodeRecord(buf.subarray(0, 600), 0, 3)).toEqual({ ok: false, reason: 'short' });
    expect(decodeRecord(buf.subarray(0, 100), 0, 3)).toEqual({ ok: false, reason: 'short' });
  });

  it('stores the crc masked, so a record nested as payload cannot validate by accident', () => {
    const inner = encoded();
    const raw = crc32c(inner.subarray(4, RECORD_HEADER_BYTES + 11));
    expect(inner.readUInt32LE(0)).toBe(maskCrc(raw));
    expect(maskCrc(raw)).not.toBe(raw);
  });

  it('refuses a pair id longer than 64 bytes', () => {
    const buf = Buffer.alloc(4096);
    expect(() => encodeRecord(buf, 0, 1, { ...fields, pairId: 'x'.repeat(65) })).toThrow(RangeError);
  });
});
