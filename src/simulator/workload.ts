// Synthetic disk workloads: where the next write goes and how long it is.
export type WorkloadName = 'sequential' | 'random' | 'zipf' | 'oltp' | 'fill' | 'mixed';
export const WORKLOADS: readonly WorkloadName[] = ['sequential', 'random', 'zipf', 'oltp', 'fill', 'mixed'];

export interface NextWrite {
  offset: number;
  length: number;
}

/** mulberry32: small, fast, and the same everywhere for a given seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Workload {
  /** The next write, or null when the workload is done (fill). */
  next(): NextWrite | null;
}

function align(n: number, a: number): number {
  return Math.floor(n / a) * a;
}

export function makeWorkload(name: WorkloadName, diskBytes: number, ioBytes: number, sectorBytes: number, random: () => number): Workload {
  const io = Math.max(sectorBytes, align(Math.min(ioBytes, diskBytes), sectorBytes));
  switch (name) {
    case 'sequential': {
      let pos = 0;
      return {
        next: () => {
          if (pos + io > diskBytes) pos = 0;
          const w = { offset: pos, length: io };
          pos += io;
          return w;
        },
      };
    }
    case 'fill': {
      let pos = 0;
      return {
        next: () => {
          if (pos >= diskBytes) return null;
          const w = { offset: pos, length: Math.min(io, diskBytes - pos) };
          pos += w.length;
          return w;
        },
      };
    }
    case 'random':
      return { next: () => ({ offset: align(random() * (diskBytes - io + 1), io) % Math.max(io, align(diskBytes - io + io, io)), length: io }) };
    case 'zipf': {
      // 1024 regions with weights 1/k^1.1 (hot spots), uniform inside a region.
      const regions = 1024;
      const cdf: number[] = [];
      let sum = 0;
      for (let k = 1; k <= regions; k++) cdf.push((sum += 1 / k ** 1.1));
      const regionBytes = Math.max(io, align(diskBytes / regions, sectorBytes));
      // Spread the hot regions over the disk instead of packing them at its start.
      const perm = Array.from({ length: regions }, (_, i) => i).sort(() => random() - 0.5);
      return {
        next: () => {
          const u = random() * sum;
          let lo = 0;
          let hi = regions - 1;
          while (lo < hi) {
            const mid = (lo + hi) >> 1;
            if ((cdf[mid] as number) < u) lo = mid + 1;
            else hi = mid;
          }
          const base = (perm[lo] as number) * regionBytes;
          const within = align(random() * Math.max(0, regionBytes - io), sectorBytes);
          const offset = Math.min(align(diskBytes - io, sectorBytes), base + within);
          return { offset, length: io };
        },
      };
    }
    case 'oltp': {
      const small = [4096, 8192, 16384].map((n) => Math.max(sectorBytes, align(n, sectorBytes)));
      return {
        next: () => {
          const length = small[Math.floor(random() * small.length)] as number;
          return { offset: align(random() * (diskBytes - length), sectorBytes), length };
        },
      };
    }
    case 'mixed': {
      const parts = [makeWorkload('zipf', diskBytes, io, sectorBytes, random), makeWorkload('oltp', diskBytes, io, sectorBytes, random)];
      const seq = makeWorkload('sequential', diskBytes, Math.max(io, 256 * 1024), sectorBytes, random);
      let burst = 0;
      return {
        next: () => {
          if (burst > 0) {
            burst--;
            return seq.next();
          }
          const r = random();
          if (r < 0.02) burst = 32; // a sequential burst now and then
          return (parts[r < 0.5 ? 0 : 1] as Workload).next();
        },
      };
    }
  }
}
