import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { crc32cCombine } from '../../../src/journal/crc32c-combine';
import { crc32c } from '../../../src/native';

describe('crc32cCombine', () => {
  it('gives the CRC of two pieces joined, from the CRCs of each', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 5000 }), (a, b) => {
        const joined = Buffer.concat([a, b]);
        expect(crc32cCombine(crc32c(a), crc32c(b), b.length)).toBe(crc32c(joined));
      }),
      { numRuns: 300 },
    );
  });

  it('holds for a 1 MiB piece and for an empty one', () => {
    const a = Buffer.from('header bytes');
    const b = Buffer.alloc(1024 * 1024, 0x5a);
    expect(crc32cCombine(crc32c(a), crc32c(b), b.length)).toBe(crc32c(Buffer.concat([a, b])));
    expect(crc32cCombine(crc32c(a), crc32c(Buffer.alloc(0)), 0)).toBe(crc32c(a));
  });
});
