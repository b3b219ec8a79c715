import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeRecords, parseRecords } from '../../../src/protocol/records';
import { parseClientMessage } from '../../../src/protocol/messages';
import { ProtocolError } from '../../../src/protocol/errors';

describe('wire records', () => {
  it('round-trip any number of records, with payloads as views into the message', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ stream: fc.nat({ max: 0xffffffff }), seq: fc.integer({ min: 1, max: 2 ** 40 }), offset: fc.nat({ max: 2 ** 40 }), time: fc.nat({ max: 2 ** 52 }), data: fc.uint8Array({ minLength: 1, maxLength: 2048 }), resync: fc.boolean() }), { minLength: 1, maxLength: 8 }),
        (records) => {
          const msg = encodeRecords(records);
          const parsed = parseRecords(msg);
          expect(parsed).toHaveLength(records.length);
          parsed.forEach((p, i) => {
            const r = records[i] as (typeof records)[number];
            expect({ stream: p.stream, seq: p.seq, offset: p.offset, time: p.time, length: p.length, flags: p.flags }).toEqual({ stream: r.stream, seq: r.seq, offset: r.offset, time: r.time, length: r.data.length, flags: r.resync ? 1 : 0 });
            expect(Buffer.from(p.payload).equals(Buffer.from(r.data))).toBe(true);
            expect(p.payload.buffer).toBe(msg.buffer);
          });
        },
      ),
    );
  });

  it('refuses truncation, unknown kinds, reserved bits and empty messages as malformed', () => {
    const msg = encodeRecords([{ stream: 1, seq: 1, offset: 0, time: 1, data: Buffer.alloc(512, 1) }]);
    for (const bad of [msg.subarray(0, 39), msg.subarray(0, 100), Buffer.alloc(0)]) expect(() => parseRecords(bad)).toThrow(ProtocolError);
    const kind = Buffer.from(msg);
    kind[0] = 2;
    expect(() => parseRecords(kind)).toThrow(/unknown record kind 2/);
    const flags = Buffer.from(msg);
    flags[1] = 2;
    expect(() => parseRecords(flags)).toThrow(/reserved bits/);
  });
});

describe('text messages', () => {
  it('parses every client message and refuses the rest as malformed', () => {
    expect(parseClientMessage('{"type":"open","pair":"a","diskBytes":4096,"sectorBytes":512}')).toMatchObject({ type: 'open', pair: 'a' });
    expect(parseClientMessage('{"type":"tag","stream":1,"seq":2,"time":3,"kind":"app","name":"n","group":"g"}')).toMatchObject({ type: 'tag', group: 'g' });
    for (const bad of ['nope', '[]', '{"type":"dance"}', '{"type":"tick","stream":1,"seq":0,"time":1}', '{"type":"tag","stream":1,"seq":2,"time":3,"kind":"app","name":""}']) {
      expect(() => parseClientMessage(bad)).toThrow(expect.objectContaining({ code: 'malformed' }));
    }
  });
});
