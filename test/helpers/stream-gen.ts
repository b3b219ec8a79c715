import type { StreamItem } from '../../src/journal/items';
import { rng } from '../../src/simulator/workload';
import { payload } from './engine-fixture';

/** The simulator's PRNG (mulberry32): a stream is a pure function of (seed, seq). */
export const prng = rng;

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
