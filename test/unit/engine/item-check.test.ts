import { describe, expect, it } from 'vitest';
import { checkItem, writeProblem } from '../../../src/engine/item-check';
import type { StreamItem } from '../../../src/journal/items';
import { crc32c } from '../../../src/native';

const pair = { pairId: 'p', lastSeq: 4, sectorBytes: 512, diskBytes: 4096 };

function write(seq: number, offset: number, data: Buffer, crc?: number): StreamItem {
  return { kind: 'write', seq, time: seq, offset, data, resync: false, ...(crc === undefined ? {} : { crc32c: crc }) };
}

describe('the one check of a stream item', () => {
  it('names what is wrong with a write for its pair: length, alignment, bounds', () => {
    expect(writeProblem(512, 1024, 512, 4096)).toBeNull();
    expect(writeProblem(512, 1024, 4096, 8192)).toMatch(/multiples of 4096/);
    expect(writeProblem(512, 1024, 512, 1024)).toMatch(/past the end/);
    expect(writeProblem(0, 0, 512, 4096)).toMatch(/length 0 is not in 1\.\./);
    expect(writeProblem(0, 8 * 1024 * 1024, 512, 16 * 1024 * 1024)).toMatch(/is not in 1\.\.4194304/);
  });

  it('refuses a payload whose CRC32C does not match the one it came with', () => {
    const data = Buffer.alloc(1024, 3);
    expect(checkItem(pair, write(5, 512, data, crc32c(data)))).toBeNull();
    expect(checkItem(pair, write(5, 512, data, (crc32c(data) ^ 1) >>> 0))).toMatchObject({ code: 'bad-record', seq: 5, message: 'pair p seq 5: crc32c does not match the payload' });
    // Handed over without one (a test, the benchmark), it is not asked for.
    expect(checkItem(pair, write(5, 512, data))).toBeNull();
  });

  it('wants exactly the next seq, and names a bad record before a seq out of order', () => {
    expect(checkItem(pair, write(6, 0, Buffer.alloc(512)))).toMatchObject({ code: 'seq-gap', message: 'pair p: expected seq 5, got 6' });
    expect(checkItem(pair, write(4, 0, Buffer.alloc(512)))).toMatchObject({ code: 'seq-gap' });
    expect(checkItem(pair, write(6, 0, Buffer.alloc(100)))).toMatchObject({ code: 'bad-record', message: 'pair p seq 6: offset 0 and length 100 must be multiples of 512' });
  });

  it('refuses a tag name out of bounds and a time that is not a whole number of µs', () => {
    const tag = (name: string): StreamItem => ({ kind: 'tag', seq: 5, time: 5, tagKind: 'app', name, group: null });
    expect(checkItem(pair, tag('vss-1'))).toBeNull();
    expect(checkItem(pair, tag(''))).toMatchObject({ code: 'bad-record', message: 'pair p seq 5: tag name must be 1..128 characters' });
    expect(checkItem(pair, tag('x'.repeat(129)))).toMatchObject({ code: 'bad-record' });
    expect(checkItem(pair, { kind: 'tick', seq: 5, time: -1 })).toMatchObject({ code: 'bad-record', message: 'pair p seq 5: bad time' });
    expect(checkItem(pair, { kind: 'tick', seq: 5, time: 1.5 })).toMatchObject({ code: 'bad-record' });
  });
});
