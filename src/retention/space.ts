// How much the retention volume may still take.
import { statfs } from '../native';

export interface SpaceAccount {
  /** What the agent may use in all: maxBytes, or what it uses plus the volume's free space less the reserve. */
  capacityBytes: number;
  usedBytes: number;
  ingestBytes: number;
  undoBytes: number;
  /** Test failovers' scratch areas. */
  scratchBytes: number;
  /** capacity - used, never below 0. */
  availableBytes: number;
  volumeCapacityBytes: number;
  volumeFreeBytes: number;
}

export async function measureSpace(
  retentionDir: string,
  ingestBytes: number,
  undoBytes: number,
  scratchBytes: number,
  maxBytes: number | null,
  reserveBytes: number,
): Promise<SpaceAccount> {
  const fs = await statfs(retentionDir);
  const used = ingestBytes + undoBytes + scratchBytes;
  const byVolume = used + Math.max(0, fs.availableBytes - reserveBytes);
  const capacity = maxBytes === null ? byVolume : Math.min(maxBytes, byVolume);
  return {
    capacityBytes: capacity,
    usedBytes: used,
    ingestBytes,
    undoBytes,
    scratchBytes,
    availableBytes: Math.max(0, capacity - used),
    volumeCapacityBytes: fs.capacityBytes,
    volumeFreeBytes: fs.availableBytes,
  };
}

/**
 * The least retention that lets every pair apply: the ingest log's segment
 * being written and the next, and for each pair the undo segment being
 * written and the next (history is shortened a closed segment at a time, so
 * a segment is never given back before the next one exists). Below it, a
 * pair stops applying for good once the volume fills.
 */
export function minimumRetentionBytes(pairCount: number, ingestSegmentBytes: number, undoSegmentBytes: number): number {
  return 2 * ingestSegmentBytes + 2 * undoSegmentBytes * Math.max(1, pairCount);
}
