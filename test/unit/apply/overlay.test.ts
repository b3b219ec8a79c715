import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EarliestWins, Shadow, alignRanges, mergeRanges, type Extent } from '../../../src/apply/overlay';

/** Applies extents to a plain buffer. */
function lay(size: number, extents: readonly Extent[], base?: Buffer): Buffer {
  const b = base ? Buffer.from(base) : Buffer.alloc(size);
  for (const e of extents) e.data.copy(b, e.offset);
  return b;
}

describe('overlay arithmetic', () => {
  it('merges overlapping and touching ranges', () => {
    expect(mergeRanges([{ offset: 10, length: 5 }, { offset: 0, length: 10 }, { offset: 30, length: 1 }, { offset: 12, length: 10 }])).toEqual([
      { offset: 0, length: 22 },
      { offset: 30, length: 1 },
    ]);
  });

  it('widens ranges to whole blocks, never past the disk, and merges what then touches', () => {
    expect(alignRanges([{ offset: 512, length: 512 }, { offset: 4096 + 1024, length: 512 }, { offset: 16384, length: 4096 }, { offset: 40960 - 512, length: 512 }], 4096, 40960 - 512)).toEqual([
      { offset: 0, length: 8192 },
      { offset: 16384, length: 4096 },
      { offset: 36864, length: 4096 - 512 },
    ]);
    expect(alignRanges([{ offset: 512, length: 512 }], 1, 4096)).toEqual([{ offset: 512, length: 512 }]);
  });

  it('EarliestWins gives disjoint pieces equal to laying the pieces in reverse order', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ offset: fc.nat({ max: 200 }), length: fc.integer({ min: 1, max: 60 }), fill: fc.integer({ min: 1, max: 255 }) }), { maxLength: 30 }), (pieces) => {
        const size = 300;
        const ew = new EarliestWins();
        const out: Extent[] = [];
        for (const p of pieces) out.push(...ew.add(p.offset, Buffer.alloc(p.length, p.fill)));
        for (let i = 0; i < out.length; i++) {
          for (let j = i + 1; j < out.length; j++) {
            const a = out[i] as Extent;
            const b = out[j] as Extent;
            expect(a.offset + a.data.length <= b.offset || b.offset + b.data.length <= a.offset).toBe(true);
          }
        }
        const reversed = [...pieces].reverse().map((p) => ({ offset: p.offset, data: Buffer.alloc(p.length, p.fill) }));
        expect(lay(size, out).equals(lay(size, reversed))).toBe(true);
      }),
    );
  });

  it('Shadow gives each write the bytes just before it', () => {
    const s = new Shadow([{ offset: 100, data: Buffer.alloc(50, 1) }]);
    const before = s.read(110, 10);
    s.write(110, Buffer.alloc(10, 2));
    expect(before.equals(Buffer.alloc(10, 1))).toBe(true);
    expect(s.read(105, 10).equals(Buffer.concat([Buffer.alloc(5, 1), Buffer.alloc(5, 2)]))).toBe(true);
    expect(() => s.read(140, 20)).toThrow(RangeError);
  });
});
