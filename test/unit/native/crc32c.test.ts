import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { crc32c, crc32cHardware, crc32cImplementation, crc32cSoftware } from '../../../src/native';

type Crc = (data: Uint8Array, seed?: number) => number;
const implementations: Array<[string, Crc]> = [
  ['crc32c', crc32c],
  ['software', crc32cSoftware],
  ...(crc32cHardware ? [['hardware', crc32cHardware] as [string, Crc]] : []),
];

const ascending = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
const descending = Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i));

describe.each(implementations)('crc32c (%s)', (_name, crc) => {
  it('matches the RFC 3720 B.4 test vectors', () => {
    expect(crc(Buffer.alloc(32, 0))).toBe(0x8a9136aa);
    expect(crc(Buffer.alloc(32, 0xff))).toBe(0x62a8ab43);
    expect(crc(ascending)).toBe(0x46dd794e);
    expect(crc(descending)).toBe(0x113fdb5c);
  });

  it('matches the check value for "123456789" and is 0 for nothing', () => {
    expect(crc(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc(Buffer.alloc(0))).toBe(0);
  });

  it('continues from a seed as if the pieces were one buffer', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 70_000 }), fc.nat(), (bytes, cutSeed) => {
        const cut = bytes.length === 0 ? 0 : cutSeed % (bytes.length + 1);
        const whole = crc(bytes);
        expect(crc(bytes.subarray(cut), crc(bytes.subarray(0, cut)))).toBe(whole);
      }),
      { numRuns: 60 },
    );
  });
});

describe('crc32c paths', () => {
  it('uses the hardware path where the CPU has SSE4.2', () => {
    const hasSse42 = process.arch === 'x64' && /\bsse4_2\b/.test(readFileSync('/proc/cpuinfo', 'utf8'));
    expect(crc32cImplementation).toBe(hasSse42 ? 'sse4.2' : 'software');
  });

  it.runIf(crc32cHardware !== undefined)('hardware and software agree on random buffers, odd lengths and offsets', () => {
    const hw = crc32cHardware as Crc;
    // Lengths cross the 3 x 256 and 3 x 8192 interleave thresholds; offsets break 8-byte alignment.
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 60_000 }),
        fc.nat({ max: 15 }),
        fc.nat({ max: 0xffffffff }),
        (bytes, skip, seed) => {
          const view = bytes.subarray(Math.min(skip, bytes.length));
          expect(hw(view, seed)).toBe(crc32cSoftware(view, seed));
        },
      ),
      { numRuns: 300 },
    );
    const big = Buffer.alloc(4 * 1024 * 1024 + 13);
    for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
    for (const start of [0, 1, 3, 7]) {
      expect(hw(big.subarray(start))).toBe(crc32cSoftware(big.subarray(start)));
    }
  });

  it('refuses what is not bytes, and seeds that are not u32', () => {
    expect(() => crc32c('text' as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => crc32c(new Uint16Array(4) as unknown as Uint8Array)).toThrow(/Buffer or Uint8Array/);
    expect(() => crc32c(Buffer.alloc(1), -1)).toThrow(RangeError);
    expect(() => crc32c(Buffer.alloc(1), 2 ** 32)).toThrow(RangeError);
  });
});
