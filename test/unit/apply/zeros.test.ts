import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isAllZero, zeroImage } from '../../../src/apply/zeros';

// A before-image taken for zeros when it is not would be laid back as zeros:
// a wrong recovery point. So every byte counts, across the 64 KiB pieces the
// check compares in.
describe('isAllZero', () => {
  it('finds one byte of data anywhere, across the pieces it compares in', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 * 1024 }), fc.nat(), fc.integer({ min: 1, max: 255 }), (length, at, value) => {
        const buf = Buffer.alloc(length);
        expect(isAllZero(buf)).toBe(true);
        buf[at % length] = value;
        expect(isAllZero(buf)).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  it('checks the edges of each piece and of the buffer', () => {
    const length = 3 * 64 * 1024 + 100;
    for (const at of [0, 64 * 1024 - 1, 64 * 1024, 128 * 1024 - 1, 128 * 1024, 3 * 64 * 1024, length - 1]) {
      const buf = Buffer.alloc(length);
      buf[at] = 1;
      expect(isAllZero(buf), `byte ${at}`).toBe(false);
    }
  });

  it('takes a view into a larger buffer as the view, not the buffer', () => {
    const big = Buffer.alloc(256 * 1024);
    big[1000] = 7;
    expect(isAllZero(big.subarray(1001, 200 * 1024))).toBe(true);
    expect(isAllZero(big.subarray(1000, 200 * 1024))).toBe(false);
  });
});

describe('zeroImage', () => {
  it('gives zeros of the length asked, growing as needed', () => {
    for (const length of [0, 1, 4096, 64 * 1024, 4 * 1024 * 1024, 512]) {
      const z = zeroImage(length);
      expect(z.length).toBe(length);
      expect(isAllZero(z)).toBe(true);
    }
  });
});
