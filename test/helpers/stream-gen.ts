import type { StreamItem } from '../../src/journal/items';
import { payload } from './engine-fixture';

/** A small PRNG (mulberry32) so a stream is a pure function of (seed, seq). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const STREAM_T0 = 1_764_000_000_000_000;

/** The item with this seq of a deterministic stream over a disk of `diskBytes`. */
export function streamItem(pairId: string, seed: number, seq: number, diskBytes: number): StreamItem {
  const r = prng(seed * 1_000_003 + seq);
  const time = STREAM_T0 + seq * 10_000;
  const roll = r();
  if (roll < 0.05) return { kind: 'tag', seq, time, tagKind: r() < 0.5 ? 'app' : 'crash', name: `tag-${seq}`, group: null };
  if (roll < 0.08) return { kind: 'tick', seq, time };
  const sectors = 1 + Math.floor(r() * 128);
  const length = sectors * 512;
  const offset = Math.floor(r() * ((diskBytes - length) / 512 + 1)) * 512;
  return { kind: 'write', seq, time, offset, data: payload(pairId, seq, length), resync: false };
}
